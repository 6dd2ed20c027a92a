//! airf-evidence: the schema of what airf stores and reports, shared by the agent that writes it
//! and the readers that check it (the controller, `airf-agent verify`).
//!
//! - [`manifest`]: the manifest stored beside every image, and the facts it records about the
//!   host ([`host`]), the source ([`disk`], [`snapshot`], [`memory`], [`ram`], [`content`]), the stored objects
//!   ([`stored`]) and the unreadable ranges ([`unreadable`]);
//! - [`report`]: the JSON result the agent prints at the end of every command;
//! - [`symbols`]: whether a memory capture stored what a Volatility symbol table is built from,
//!   and the manifest stored beside each table;
//! - [`triage`]: what `airf-agent triage` stores and its manifest;
//! - [`control_plane`]: what the AWS APIs said about an instance before containment, and the
//!   manifest that lists each stored answer with its hash;
//! - [`custody`]: the controller's countersignature of a verified manifest and the per-case
//!   custody log;
//! - [`EvidenceKind`]: memory or disk, the same word in manifests, reports and the workflow.
//!
//! Forward compatibility: a reader accepts what a newer agent of the same major
//! [`manifest::SCHEMA_VERSION`] writes. Unknown fields of manifests and reports are kept in
//! their `extra` maps ([`Value`]), unknown fields deeper down are ignored, and unknown enum
//! values read as an `Unknown` variant; only a newer major version is refused
//! ([`manifest::SchemaTooNew`]). Writers therefore only add optional fields and new enum values
//! within a major version.
//!
//! The crate knows nothing of JSON itself (so its readers pick their own serde format); see
//! [`manifest::Manifest::decode`] for how a manifest is read.

pub mod content;
pub mod control_plane;
pub mod custody;
pub mod disk;
pub mod host;
pub mod kind;
pub mod manifest;
pub mod memory;
pub mod ram;
pub mod report;
pub mod snapshot;
pub mod stored;
pub mod symbols;
pub mod triage;
pub mod unreadable;
pub mod value;

pub use kind::EvidenceKind;
pub use manifest::Manifest;
pub use value::{Extra, Value};
