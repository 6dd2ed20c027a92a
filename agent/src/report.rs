//! The one JSON object printed on stdout at the end of every command, and the exit status.
//!
//! Automation (an SSM document, a Step Functions task) parses this; people read the summary
//! line that [`RunReport::human_summary`] prints instead when stdout is a terminal.

use serde::{Deserialize, Serialize};

use crate::sink::{AbortReport, StoredObject};

/// Exit statuses, documented in README.md.
pub mod exit {
    /// Every source acquired completely (or evidence verified intact).
    pub const OK: i32 = 0;
    /// Failed: no trustworthy evidence from at least one source.
    pub const FAILED: i32 = 1;
    /// Bad command line.
    pub const USAGE: i32 = 2;
    /// Evidence stored and whole, but some source ranges were unreadable (zero-filled, listed).
    pub const READ_ERRORS: i32 = 3;
    /// `verify`: the evidence does not match its manifest.
    pub const NOT_INTACT: i32 = 4;
    /// A memory image was stored, but the running kernel's banner is not in it: the source lost
    /// memory (e.g. LiME zero-filled ranges). Stored and labelled, never evidence of the kernel.
    pub const HOLLOW: i32 = 5;
    /// Interrupted by SIGINT.
    pub const SIGINT: i32 = 130;
    /// Interrupted by SIGTERM.
    pub const SIGTERM: i32 = 143;
}

/// Overall or per-source outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// All bytes read and stored.
    Complete,
    /// Stored and whole, with unreadable ranges.
    CompletedWithReadErrors,
    /// A memory image stored and whole, but without the running kernel's banner: memory is
    /// missing from it (`error` says why).
    Hollow,
    /// Failed; nothing claims success.
    Failed,
    /// Stopped by a signal; nothing claims success.
    Interrupted,
}

/// The outcome for one source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceReport {
    /// Source path or name.
    pub source: String,
    /// Outcome.
    pub status: Status,
    /// Where the image is (absent on failure).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<StoredObject>,
    /// Where the manifest is (absent on failure and for stdout).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest: Option<StoredObject>,
    /// The manifest itself, when it could not be stored (stdout destination).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest_inline: Option<serde_json::Value>,
    /// Raw bytes read.
    pub raw_size: u64,
    /// SHA-256 of the raw bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_sha256: Option<String>,
    /// Stored bytes.
    pub compressed_size: u64,
    /// SHA-256 of the stored bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compressed_sha256: Option<String>,
    /// Unreadable bytes (zero-filled).
    pub unreadable_bytes: u64,
    /// Number of unreadable ranges (see the manifest for the list).
    pub unreadable_ranges: u64,
    /// Seconds spent on this source.
    pub duration_seconds: f64,
    /// Raw MB/s (10^6 bytes per second).
    pub throughput_mb_s: f64,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What happened to the partial upload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cleanup: Option<AbortReport>,
}

/// The result of one command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// The subcommand (`disk`, `memory`).
    pub command: String,
    /// Worst outcome across sources.
    pub status: Status,
    /// Process exit status.
    pub exit_code: i32,
    /// Case identifier.
    pub case: String,
    /// The evidence folder (S3 prefix or directory).
    pub evidence_folder: String,
    /// Per-source outcomes.
    pub sources: Vec<SourceReport>,
    /// Errors not tied to one source.
    pub errors: Vec<String>,
    /// Seconds for the whole command.
    pub duration_seconds: f64,
}

impl RunReport {
    /// Builds the overall report: the worst per-source status wins.
    pub fn new(
        command: &str,
        case: &str,
        folder: &str,
        sources: Vec<SourceReport>,
        errors: Vec<String>,
        secs: f64,
        signal: Option<i32>,
    ) -> Self {
        let mut status = sources
            .iter()
            .map(|s| s.status)
            .max()
            .unwrap_or(Status::Failed);
        if !errors.is_empty() && status < Status::Failed {
            status = Status::Failed;
        }
        if signal.is_some() {
            status = Status::Interrupted;
        }
        let exit_code = match (status, signal) {
            (Status::Interrupted, Some(nix::libc::SIGTERM)) => exit::SIGTERM,
            (Status::Interrupted, _) => exit::SIGINT,
            (Status::Failed, _) => exit::FAILED,
            (Status::CompletedWithReadErrors, _) => exit::READ_ERRORS,
            (Status::Hollow, _) => exit::HOLLOW,
            (Status::Complete, _) => exit::OK,
        };
        Self {
            command: command.into(),
            status,
            exit_code,
            case: case.into(),
            evidence_folder: folder.into(),
            sources,
            errors,
            duration_seconds: secs,
        }
    }

    /// A few lines for a person at a terminal.
    pub fn human_summary(&self) -> String {
        let mut out = String::new();
        for s in &self.sources {
            let what = match s.status {
                Status::Complete => "acquired completely".to_owned(),
                Status::CompletedWithReadErrors => format!(
                    "completed with read errors: {} in {} range(s) unreadable, zero-filled and listed in the manifest",
                    crate::progress::human_bytes(s.unreadable_bytes),
                    s.unreadable_ranges
                ),
                Status::Hollow => format!(
                    "HOLLOW, do not rely on it: {}",
                    s.error
                        .as_deref()
                        .unwrap_or("memory is missing from the image")
                ),
                Status::Failed => {
                    format!("FAILED: {}", s.error.as_deref().unwrap_or("unknown error"))
                }
                Status::Interrupted => {
                    "INTERRUPTED: nothing stored claims to be complete".to_owned()
                }
            };
            out.push_str(&format!("{}: {what}\n", s.source));
            if let Some(img) = &s.image {
                out.push_str(&format!(
                    "  image    {} ({} from {}, {:.0} MB/s)\n",
                    img.location,
                    crate::progress::human_bytes(s.compressed_size),
                    crate::progress::human_bytes(s.raw_size),
                    s.throughput_mb_s
                ));
            }
            if let Some(m) = &s.manifest {
                out.push_str(&format!("  manifest {}\n", m.location));
                out.push_str(&format!(
                    "  check it with: airf-agent verify {}\n",
                    m.location
                ));
            }
            if let Some(h) = &s.raw_sha256 {
                out.push_str(&format!("  sha256   {h} (raw)\n"));
            }
            if let Some(c) = &s.cleanup {
                out.push_str(&format!("  cleanup  {}\n", c.detail));
            }
        }
        for e in &self.errors {
            out.push_str(&format!("error: {e}\n"));
        }
        out
    }
}
