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
mod session;
mod stream;

use std::io;
use std::path::PathBuf;

pub use airf_evidence::memory::LimeModuleFacts;
pub use check::{check_module, parse_modinfo, read_modinfo, vermagic_release};
pub use session::{LimeSession, LimeTimeouts, module_parameters};
pub use stream::{LimeProducer, LimeStreamProducer};

/// Why LiME could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LimeError {
    /// No module given.
    #[error("no LiME module given (--lime-module PATH --lime-sha256 HEX)")]
    NoModule,
    /// No hash given.
    #[error(
        "--lime-sha256 is required with --lime-module: a module is only loaded when its hash is known"
    )]
    NoHash,
    /// Reading the file failed.
    #[error("reading LiME module {path}: {error}")]
    Read {
        /// Path.
        path: PathBuf,
        /// Error.
        #[source]
        error: io::Error,
    },
    /// Hash mismatch.
    #[error(
        "LiME module {path} has SHA-256 {actual}, not the expected {expected}; refusing to load it"
    )]
    Hash {
        /// Path.
        path: PathBuf,
        /// Its hash.
        actual: String,
        /// --lime-sha256.
        expected: String,
    },
    /// Not a kernel module.
    #[error("{path} is not a kernel module: {detail}")]
    NotModule {
        /// Path.
        path: PathBuf,
        /// Why.
        detail: String,
    },
    /// Built for another kernel.
    #[error(
        "LiME module {path} was built for kernel {module_release} (vermagic {vermagic:?}) but the running kernel is {running}; refusing to load it"
    )]
    Vermagic {
        /// Path.
        path: PathBuf,
        /// Module's full vermagic.
        vermagic: String,
        /// The release part of it.
        module_release: String,
        /// `uname -r`.
        running: String,
    },
    /// finit_module failed.
    #[error("loading LiME failed: {0}{1}")]
    Load(nix::Error, &'static str),
    /// Never connected.
    #[error("LiME did not accept a connection on 127.0.0.1:{port} within {secs} s: {last}")]
    Connect {
        /// Port.
        port: u16,
        /// Timeout.
        secs: u64,
        /// Last connect error.
        last: String,
    },
    /// Socket setup.
    #[error("LiME socket: {0}")]
    Socket(#[source] io::Error),
}
