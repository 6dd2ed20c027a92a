//! Why LiME could not be used: shared by the module check and the session.

use std::io;
use std::path::PathBuf;

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
