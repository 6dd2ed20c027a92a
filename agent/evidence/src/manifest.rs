//! The manifest: the signed-off record of one acquisition, stored beside the image and written
//! last, so its presence means the image is whole. Field meanings are documented in the agent's
//! README.md.

use serde::{Deserialize, Serialize};

use crate::disk::DiskFacts;
use crate::host::HostFacts;
use crate::kind::EvidenceKind;
use crate::memory::MemoryFacts;
use crate::snapshot::SnapshotFacts;
use crate::stored::StoredObject;
use crate::unreadable::BadRanges;
use crate::value::Extra;

/// Current major schema version. Within a major version writers only add optional fields and
/// new enum values, which readers of that version accept; a newer major is refused.
pub const SCHEMA_VERSION: u32 = 1;

/// How complete the evidence is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvidenceStatus {
    /// Every byte was read.
    Complete,
    /// The image is whole, but some source ranges were unreadable and are zero-filled.
    CompletedWithReadErrors,
    /// The image is whole and matches its hashes, but its content shows that the source lost
    /// memory: the running kernel's banner is not in it (see `source.content`).
    Hollow,
    /// A status a newer agent knows: read it as "not known to be complete".
    #[serde(other)]
    Unknown,
}

/// The tool that made the evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tool {
    /// Always `airf-agent`.
    pub name: String,
    /// Crate version.
    pub version: String,
}

/// What was acquired.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SourceFacts {
    /// A block device or disk image file.
    Disk(DiskFacts),
    /// Physical memory (LiME-format image); lists its artifacts too.
    Memory(Box<MemoryFacts>),
    /// An EBS snapshot read through the EBS direct APIs (kind `disk`: the image is the volume).
    Snapshot(Box<SnapshotFacts>),
    /// A type of source a newer agent knows; its facts are not read.
    #[serde(other)]
    Unknown,
}

/// Raw (uncompressed) stream facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawFacts {
    /// Bytes.
    pub size: u64,
    /// SHA-256, lowercase hex.
    pub sha256: String,
}

/// Compressed object facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompressedFacts {
    /// Always `zstd-seekable`.
    pub format: String,
    /// Bytes, seek table included.
    pub size: u64,
    /// SHA-256 of the stored bytes, lowercase hex.
    pub sha256: String,
    /// zstd level.
    pub level: i32,
    /// Uncompressed bytes per frame (the last frame may be shorter).
    pub frame_size: u64,
    /// Number of frames.
    pub frames: u64,
}

/// The agent's own footprint during the acquisition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentFootprint {
    /// Peak resident set size of the agent process, bytes.
    pub peak_rss_bytes: u64,
    /// Compression threads used.
    pub threads: usize,
}

/// One acquisition's manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Producing tool.
    pub tool: Tool,
    /// Case identifier given with `--case`.
    pub case: String,
    /// Memory or disk.
    pub kind: EvidenceKind,
    /// Complete, or completed with read errors.
    pub status: EvidenceStatus,
    /// The acquired host.
    pub host: HostFacts,
    /// The acquired source.
    pub source: SourceFacts,
    /// UTC start, RFC 3339.
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: time::OffsetDateTime,
    /// UTC end, RFC 3339.
    #[serde(with = "time::serde::rfc3339")]
    pub finished_at: time::OffsetDateTime,
    /// Raw stream.
    pub raw: RawFacts,
    /// Stored object.
    pub compressed: CompressedFacts,
    /// Where the image is stored.
    pub image: StoredObject,
    /// Unreadable source ranges, zero-filled in the image.
    pub unreadable: BadRanges,
    /// The agent's footprint.
    pub agent: AgentFootprint,
    /// What a reader should know that no other field says (e.g. the source was empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Top-level fields a newer agent wrote, kept as they were.
    #[serde(flatten)]
    pub extra: Extra,
}

/// The one field every manifest of every version has, read before the rest so that a newer
/// major version is refused by name rather than by whichever field it changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct ManifestHead {
    /// The manifest's major schema version.
    pub schema_version: u32,
}

impl ManifestHead {
    /// Refuses a major version newer than [`SCHEMA_VERSION`].
    pub fn check(self) -> Result<(), SchemaTooNew> {
        if self.schema_version > SCHEMA_VERSION {
            return Err(SchemaTooNew {
                found: self.schema_version,
                supported: SCHEMA_VERSION,
            });
        }
        Ok(())
    }
}

/// A manifest of a newer major schema version than this reader understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "manifest schema version {found} is newer than this reader understands (schema version {supported}); read it with a newer airf release"
)]
pub struct SchemaTooNew {
    /// The manifest's version.
    pub found: u32,
    /// The newest version this reader understands.
    pub supported: u32,
}

/// Why a manifest cannot be read; `E` is the serde format's error.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError<E> {
    /// Not in the format, or missing fields.
    #[error("not a valid airf manifest: {0}")]
    Invalid(E),
    /// Written by a newer major schema.
    #[error(transparent)]
    TooNew(#[from] SchemaTooNew),
}

impl Manifest {
    /// Reads a manifest (untrusted bytes) in any serde format: `head` is the bytes read as a
    /// [`ManifestHead`], `full` reads them as a whole manifest once the version is known to be
    /// understood. With JSON:
    ///
    /// ```
    /// # use airf_evidence::Manifest;
    /// # fn read(bytes: &[u8]) -> Result<Manifest, airf_evidence::manifest::ManifestError<serde_json::Error>> {
    /// Manifest::decode(serde_json::from_slice(bytes), || serde_json::from_slice(bytes))
    /// # }
    /// ```
    pub fn decode<E>(
        head: Result<ManifestHead, E>,
        full: impl FnOnce() -> Result<Manifest, E>,
    ) -> Result<Manifest, ManifestError<E>> {
        head.map_err(ManifestError::Invalid)?.check()?;
        full().map_err(ManifestError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::DiskKind;
    use crate::value::Value;

    type JsonResult = Result<Manifest, ManifestError<serde_json::Error>>;

    fn parse(bytes: &[u8]) -> JsonResult {
        Manifest::decode(serde_json::from_slice(bytes), || {
            serde_json::from_slice(bytes)
        })
    }

    fn sample() -> Manifest {
        parse(include_bytes!("fixtures/manifest-1-disk.json")).unwrap()
    }

    #[test]
    fn a_manifest_of_this_version_round_trips() {
        let m = sample();
        assert_eq!(m.kind, EvidenceKind::Disk);
        assert_eq!(m.status, EvidenceStatus::Complete);
        assert!(matches!(&m.source, SourceFacts::Disk(d) if d.kind == DiskKind::BlockDevice));
        assert!(m.extra.is_empty());
        let json = serde_json::to_vec(&m).unwrap();
        assert_eq!(parse(&json).unwrap(), m);
        // The same JSON as the fixture, field for field.
        let written: serde_json::Value = serde_json::from_slice(&json).unwrap();
        let fixture: serde_json::Value =
            serde_json::from_slice(include_bytes!("fixtures/manifest-1-disk.json")).unwrap();
        assert_eq!(written, fixture);
    }

    /// A newer agent of the same major version: new fields at several levels, a new kind, a new
    /// status and a new type of source. Everything known is read, nothing fails.
    #[test]
    fn a_manifest_from_a_newer_minor_version_is_read() {
        let m = parse(include_bytes!("fixtures/manifest-1-future-minor.json")).unwrap();
        assert_eq!(m.schema_version, 1);
        assert_eq!(m.kind, EvidenceKind::Unknown("network_capture".into()));
        assert_eq!(m.kind.to_string(), "network_capture");
        assert_eq!(m.status, EvidenceStatus::Unknown);
        assert_eq!(m.source, SourceFacts::Unknown);
        assert_eq!(m.case, "IR-7");
        assert_eq!(m.raw.size, 10);
        assert_eq!(m.host.hostname, "h");
        assert_eq!(m.image.location, "evidence/eth0.pcap.zst");
        assert_eq!(
            m.extra.get("signature").and_then(|s| s.get("algorithm")),
            Some(&Value::String("ed25519".into()))
        );
        assert_eq!(m.extra.get("retention_days"), Some(&Value::Unsigned(365)));
        // Kept fields are written back.
        let again: serde_json::Value = serde_json::to_value(&m).unwrap();
        assert_eq!(again["signature"]["algorithm"], "ed25519");
        assert_eq!(again["kind"], "network_capture");
    }

    #[test]
    fn unknown_memory_sources_and_disk_kinds_are_read() {
        let mut json: serde_json::Value =
            serde_json::from_slice(include_bytes!("fixtures/manifest-1-disk.json")).unwrap();
        json["source"]["kind"] = "nbd_export".into();
        let m = parse(&serde_json::to_vec(&json).unwrap()).unwrap();
        assert!(matches!(&m.source, SourceFacts::Disk(d) if d.kind == DiskKind::Unknown));
        let source: crate::memory::MemorySource = serde_json::from_str("\"avml\"").unwrap();
        assert_eq!(source, crate::memory::MemorySource::Unknown);
    }

    #[test]
    fn a_newer_major_version_is_refused_naming_both_versions() {
        // Version 2 may change anything; only its version is read.
        let v2 = br#"{"schema_version": 2, "kind": {"renamed": true}, "raw": []}"#;
        let err = parse(v2).unwrap_err();
        assert!(matches!(
            err,
            ManifestError::TooNew(SchemaTooNew {
                found: 2,
                supported: SCHEMA_VERSION
            })
        ));
        let text = err.to_string();
        assert!(
            text.contains("schema version 2") && text.contains("schema version 1"),
            "{text}"
        );
    }

    #[test]
    fn a_manifest_without_a_version_is_invalid() {
        assert!(matches!(
            parse(br#"{"kind":"disk"}"#),
            Err(ManifestError::Invalid(_))
        ));
    }
}
