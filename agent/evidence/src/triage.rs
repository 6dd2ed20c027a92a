//! What `airf-agent triage` stores: the volatile state of a running host (processes, sockets,
//! open files, modules, logins) as one JSON-lines file per category, the configuration and
//! persistence files it copied as one `tar.zst`, the executables it recovered from
//! `/proc/<pid>/exe`, and the [`TriageManifest`] listing every stored object with its SHA-256.
//!
//! Names and paths on a suspect host are hostile: [`Text`] keeps every byte of them.

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::host::HostFacts;
use crate::manifest::Tool;
use crate::value::Extra;

/// Current major version of the triage manifest (same rules as [`crate::manifest`]).
pub const SCHEMA_VERSION: u32 = 1;

/// Object names of a triage run, in the evidence folder.
pub mod names {
    /// The manifest, written last.
    pub const MANIFEST: &str = "triage.manifest.json";
    /// The copied files.
    pub const FILES: &str = "triage.files.tar.zst";
    /// A recovered executable: `triage.exe.<sha256>.bin`, one object per distinct binary.
    pub fn recovered_exe(sha256: &str) -> String {
        format!("triage.exe.{sha256}.bin")
    }
    /// A category's records: `triage.<category>.jsonl`.
    pub fn records(category: &str) -> String {
        format!("triage.{category}.jsonl")
    }
}

/// Bytes from the host (a path, a command line, a process name), kept whole: valid UTF-8 is a
/// JSON string (JSON escapes newlines and control characters faithfully), anything else is
/// `{"base64": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Text(pub Vec<u8>);

impl Text {
    /// The bytes as a string, invalid UTF-8 replaced (for summaries and comparisons only).
    pub fn lossy(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Self {
        Self(s.as_bytes().to_vec())
    }
}

impl From<Vec<u8>> for Text {
    fn from(b: Vec<u8>) -> Self {
        Self(b)
    }
}

impl std::fmt::Display for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Escaped, so a newline in a name cannot forge a line of a human summary.
        write!(f, "{}", self.lossy().escape_debug())
    }
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum TextRepr {
    Utf8(String),
    Base64 { base64: String },
}

impl Serialize for Text {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(&self.0) {
            Ok(t) => TextRepr::Utf8(t.to_owned()).serialize(s),
            Err(_) => TextRepr::Base64 {
                base64: base64::engine::general_purpose::STANDARD.encode(&self.0),
            }
            .serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match TextRepr::deserialize(d)? {
            TextRepr::Utf8(t) => Ok(Self(t.into_bytes())),
            TextRepr::Base64 { base64 } => base64::engine::general_purpose::STANDARD
                .decode(base64)
                .map(Self)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// Whether the agent saw the whole host or only a container's processes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PidNamespace {
    /// The agent runs in a nested pid namespace (its `NSpid` has more than one entry): only
    /// that namespace's processes were listed.
    pub nested: bool,
    /// `/proc/self/ns/pid`, e.g. `pid:[4026531836]`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// A plain sentence when `nested`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The limits a run kept to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budgets {
    /// Seconds for the whole collection.
    pub time_seconds: u64,
    /// Most bytes copied of one file (logs: the newest bytes, the tail).
    pub file_bytes: u64,
    /// Most bytes copied in all.
    pub total_bytes: u64,
    /// Most bytes of one recovered executable.
    pub exe_bytes: u64,
    /// Most bytes of one process's command line kept.
    pub cmdline_bytes: u64,
}

/// One stored object of the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriageObject {
    /// Object name in the evidence folder.
    pub name: String,
    /// Records category (`processes`), `files` for the archive, `executable` for a recovered one.
    pub category: String,
    /// JSON lines in it (records files only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<u64>,
    /// Bytes stored.
    pub size: u64,
    /// SHA-256 of the stored bytes, lowercase hex.
    pub sha256: String,
}

/// An executable recovered from `/proc/<pid>/exe` because its file is deleted or a memfd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveredExecutable {
    /// Processes running it.
    pub pids: Vec<u32>,
    /// The link target, e.g. `/tmp/x (deleted)` or `/memfd:payload (deleted)`.
    pub exe: Text,
    /// Object name (see [`names::recovered_exe`]).
    pub object: String,
    pub size: u64,
    /// SHA-256 of the executable's bytes.
    pub sha256: String,
}

/// One file copied into the archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopiedFile {
    /// The path on the host (the archive member is this path without its leading `/`).
    pub path: Text,
    /// Why it was collected (`cron`, `systemd`, `ssh`, `history`, `log`, ...).
    pub reason: String,
    /// Size on the host.
    pub size: u64,
    /// Bytes copied: less than `size` when a log was cut to its newest bytes.
    pub copied: u64,
    /// SHA-256 of the bytes copied.
    pub sha256: String,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// For a symbolic link: its target (links are recorded, never followed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_target: Option<Text>,
}

/// Something left out on purpose: over a budget, or not asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// Path, pid or category.
    pub item: Text,
    /// Why, in plain words.
    pub reason: String,
}

/// Something that could not be read; never fatal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unreadable {
    pub item: Text,
    /// errno name, e.g. `EACCES`, when the OS gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno: Option<String>,
    pub error: String,
}

/// A process running a deleted or memfd executable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuspectProcess {
    pub pid: u32,
    pub name: Text,
    pub exe: Text,
}

/// A listening socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listener {
    /// `tcp`, `tcp6`, `udp`, `udp6`.
    pub protocol: String,
    /// `address:port`.
    pub local: String,
    pub pids: Vec<u32>,
}

/// The few facts a responder wants in a notification.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Headline {
    pub processes: u64,
    /// Processes running a deleted or memfd executable.
    pub deleted_exe_processes: Vec<SuspectProcess>,
    pub listening: Vec<Listener>,
    /// Accounts with UID 0, `root` included.
    pub uid0_accounts: Vec<Text>,
    /// Loaded modules seen in only one of `/proc/modules` and `/sys/module`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub module_mismatches: Vec<String>,
}

/// The manifest of one triage run, written last.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriageManifest {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Always `triage`.
    pub kind: String,
    pub tool: Tool,
    pub case: String,
    pub host: HostFacts,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: time::OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub finished_at: time::OffsetDateTime,
    pub duration_seconds: f64,
    pub pid_namespace: PidNamespace,
    pub budgets: Budgets,
    /// Every object stored, the manifest excepted.
    pub objects: Vec<TriageObject>,
    #[serde(default)]
    pub recovered_executables: Vec<RecoveredExecutable>,
    #[serde(default)]
    pub copied_files: Vec<CopiedFile>,
    #[serde(default)]
    pub skipped: Vec<Skipped>,
    #[serde(default)]
    pub unreadable: Vec<Unreadable>,
    pub headline: Headline,
    #[serde(flatten)]
    pub extra: Extra,
}

/// Why a triage manifest was refused.
#[derive(Debug, thiserror::Error)]
pub enum TriageManifestError {
    #[error(
        "triage manifest schema {found} is newer than this reader's {SCHEMA_VERSION}: use a newer airf-agent"
    )]
    TooNew { found: u32 },
    #[error("not a triage manifest: kind is {0:?}")]
    Kind(String),
    #[error("triage manifest lists {0:?} twice")]
    Duplicate(String),
}

impl TriageManifest {
    /// Checks a manifest just read (this crate knows no JSON: the reader deserializes).
    pub fn check(self) -> Result<Self, TriageManifestError> {
        let m = self;
        if m.schema_version > SCHEMA_VERSION {
            return Err(TriageManifestError::TooNew {
                found: m.schema_version,
            });
        }
        if m.kind != "triage" {
            return Err(TriageManifestError::Kind(m.kind));
        }
        let mut seen = std::collections::BTreeSet::new();
        for o in &m.objects {
            if !seen.insert(o.name.as_str()) {
                return Err(TriageManifestError::Duplicate(o.name.clone()));
            }
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(bytes: &[u8]) -> Result<TriageManifest, String> {
        let m: TriageManifest = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        m.check().map_err(|e| e.to_string())
    }

    fn sample() -> TriageManifest {
        TriageManifest {
            schema_version: SCHEMA_VERSION,
            kind: "triage".into(),
            tool: Tool {
                name: "airf-agent".into(),
                version: "0.1.0".into(),
            },
            case: "IR-1".into(),
            host: HostFacts::default(),
            started_at: time::OffsetDateTime::UNIX_EPOCH,
            finished_at: time::OffsetDateTime::UNIX_EPOCH,
            duration_seconds: 1.5,
            pid_namespace: PidNamespace::default(),
            budgets: Budgets {
                time_seconds: 60,
                file_bytes: 1,
                total_bytes: 2,
                exe_bytes: 3,
                cmdline_bytes: 4,
            },
            objects: vec![TriageObject {
                name: names::records("processes"),
                category: "processes".into(),
                records: Some(3),
                size: 10,
                sha256: "00".repeat(32),
            }],
            recovered_executables: Vec::new(),
            copied_files: vec![CopiedFile {
                path: Text(b"/etc/cron.d/a\nb\xff".to_vec()),
                reason: "cron".into(),
                size: 1,
                copied: 1,
                sha256: "11".repeat(32),
                mtime: 0,
                mode: 0o644,
                uid: 0,
                gid: 0,
                link_target: None,
            }],
            skipped: Vec::new(),
            unreadable: Vec::new(),
            headline: Headline::default(),
            extra: Extra::new(),
        }
    }

    #[test]
    fn hostile_names_survive_a_round_trip() {
        let m = sample();
        let json = serde_json::to_vec(&m).unwrap();
        let text = String::from_utf8(json.clone()).unwrap();
        assert!(text.contains(r#""path":{"base64":"#), "{text}");
        assert_eq!(parse(&json).unwrap(), m);
    }

    #[test]
    fn refuses_newer_schema_other_kinds_and_duplicates() {
        let mut m = sample();
        m.schema_version = SCHEMA_VERSION + 1;
        let e = parse(&serde_json::to_vec(&m).unwrap()).unwrap_err();
        assert!(e.to_string().contains("newer airf-agent"), "{e}");
        let mut m = sample();
        m.kind = "memory".into();
        assert!(parse(&serde_json::to_vec(&m).unwrap()).is_err());
        let mut m = sample();
        m.objects.push(m.objects[0].clone());
        let e = parse(&serde_json::to_vec(&m).unwrap()).unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
    }

    proptest! {
        #[test]
        fn any_bytes_are_kept_whole(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let t = Text(bytes);
            let json = serde_json::to_string(&t).unwrap();
            prop_assert!(!json.contains('\n'));
            prop_assert_eq!(serde_json::from_str::<Text>(&json).unwrap(), t);
        }

        #[test]
        fn arbitrary_bytes_never_panic_the_parser(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn a_mutated_manifest_is_refused_or_read(pos in any::<prop::sample::Index>(), b in any::<u8>()) {
            let mut json = serde_json::to_vec(&sample()).unwrap();
            let i = pos.index(json.len());
            json[i] = b;
            let _ = parse(&json);
        }
    }
}
