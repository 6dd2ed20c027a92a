//! The one JSON object the agent prints on stdout at the end of every command: automation (an
//! SSM document, a Step Functions task) parses it, and the controller passes it on through the
//! workflow, unknown fields included.

use serde::{Deserialize, Serialize};

use crate::stored::{AbortReport, StoredObject};
use crate::value::{Extra, Value};

/// The name of the copy of the [`RunReport`] the agent stores in its evidence folder in S3
/// (`<evidence_folder>/result.json`) when it stored evidence there. SSM keeps only the first
/// 24,000 characters of a command's stdout, and a run over many sources can print more: the
/// controller then reads this copy.
pub const RESULT_OBJECT: &str = "result.json";

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
    /// A status a newer agent knows. Ranked worst: a reader that cannot tell what it means
    /// must not take it for success.
    #[serde(other)]
    Unknown,
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
    pub manifest_inline: Option<Value>,
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
    /// What went oddly but did not make the evidence untrustworthy (an empty source, an extra
    /// upload left by a lost response), and objects a failed run left behind, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The Volatility symbol table stored beside a memory image (`memory --symbols`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol_table: Option<StoredObject>,
    /// A triage run's headline facts (deleted-exe processes, listeners, UID-0 accounts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub triage: Option<crate::triage::Headline>,
    /// Fields a newer agent wrote, kept as they were.
    #[serde(flatten)]
    pub extra: Extra,
}

impl SourceReport {
    /// A source that failed before anything of it was stored; callers fill in the rest.
    pub fn failed(source: String) -> Self {
        Self {
            source,
            status: Status::Failed,
            image: None,
            manifest: None,
            manifest_inline: None,
            raw_size: 0,
            raw_sha256: None,
            compressed_size: 0,
            compressed_sha256: None,
            unreadable_bytes: 0,
            unreadable_ranges: 0,
            duration_seconds: 0.0,
            throughput_mb_s: 0.0,
            error: None,
            cleanup: None,
            warnings: Vec::new(),
            symbol_table: None,
            triage: None,
            extra: Extra::new(),
        }
    }
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
    /// Fields a newer agent wrote, kept as they were.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Status {
    /// The serialized name, e.g. `completed_with_read_errors`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Complete => "complete",
            Self::CompletedWithReadErrors => "completed_with_read_errors",
            Self::Hollow => "hollow",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
            Self::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_serialized_ones() {
        for s in [
            Status::Complete,
            Status::CompletedWithReadErrors,
            Status::Hollow,
            Status::Failed,
            Status::Interrupted,
            Status::Unknown,
        ] {
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
    }

    /// A newer agent's result: unknown fields are kept through a read and a write (the
    /// controller passes reports on through the workflow), an unknown status reads as Unknown.
    #[test]
    fn a_report_from_a_newer_agent_is_read_and_passed_on_whole() {
        let text = r#"{"command":"memory","status":"complete","exit_code":0,"case":"IR-1",
            "evidence_folder":"e/IR-1/i-1/t","errors":[],"duration_seconds":1.5,
            "host_load":{"cpu":0.5},
            "sources":[{"source":"memory (avml)","status":"verified_twice","raw_size":1,
              "compressed_size":1,"unreadable_bytes":0,"unreadable_ranges":0,
              "duration_seconds":1.0,"throughput_mb_s":1.0,"attempts":2,
              "manifest_inline":{"schema_version":1,"kind":"memory"}}]}"#;
        let r: RunReport = serde_json::from_str(text).unwrap();
        assert_eq!(r.status, Status::Complete);
        let s = &r.sources[0];
        assert_eq!(s.status, Status::Unknown);
        assert_eq!(s.extra.get("attempts"), Some(&Value::Unsigned(2)));
        assert_eq!(
            s.manifest_inline.as_ref().and_then(|m| m.get("kind")),
            Some(&Value::String("memory".into()))
        );
        let again = serde_json::to_value(&r).unwrap();
        assert_eq!(again["host_load"]["cpu"], 0.5);
        assert_eq!(again["sources"][0]["attempts"], 2);
        assert_eq!(again["sources"][0]["manifest_inline"]["kind"], "memory");
    }

    #[test]
    fn unknown_ranks_worst() {
        assert!(Status::Unknown > Status::Interrupted);
        assert!(Status::Unknown > Status::Complete);
    }
}
