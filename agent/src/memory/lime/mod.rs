//! LiME as a fallback source: check the module, load it, read its dump over loopback TCP.
//!
//! Each step is its own module, in the order they happen:
//! - `check` ([`check_module`]): whether a `lime.ko` may be loaded at all: its SHA-256 must
//!   match the one the responder gave and its `.modinfo` vermagic must name the running kernel.
//! - `session` ([`LimeSession`]): loading the checked module with parameters chosen on purpose,
//!   connecting to its loopback listener, and always unloading it at the end, also on failure.
//! - `stream` ([`LimeProducer`]): reading the dump LiME sends, checking every range header
//!   against `/proc/iomem` and the bytes that follow, so that a stall or an early end is an
//!   error, never a complete image.
//!
//! The range header itself is the image format both memory sources write, so it lives in
//! [`super::lime_format`], not here.

mod check;
mod error;
mod session;
mod stream;

pub use airf_evidence::memory::LimeModuleFacts;
pub use check::{check_module, parse_modinfo, read_modinfo, vermagic_release};
pub use error::LimeError;
pub use session::{LimeSession, LimeTimeouts, module_parameters};
pub use stream::{LimeProducer, LimeStreamProducer};
