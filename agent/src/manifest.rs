//! The manifest: the signed-off record of one acquisition, stored beside the image and written
//! last, so its presence means the image is whole. Field meanings are documented in README.md.

use serde::{Deserialize, Serialize};

use crate::host::HostFacts;
use crate::sink::StoredObject;
use crate::source::block_device::DiskFacts;
use crate::source::resilient::BadRanges;

/// Current schema version; readers refuse newer majors.
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
}

/// The tool that made the evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tool {
    /// Always `airf-agent`.
    pub name: String,
    /// Crate version.
    pub version: String,
}

impl Default for Tool {
    fn default() -> Self {
        Self {
            name: "airf-agent".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

/// What was acquired.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SourceFacts {
    /// A block device or disk image file.
    Disk(DiskFacts),
    /// Physical memory (LiME-format image); lists its artifacts too.
    Memory(Box<crate::memory::MemoryFacts>),
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
    /// `disk` or `memory`.
    pub kind: String,
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
}

/// Why a manifest cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not JSON or missing fields.
    #[error("not a valid airf manifest: {0}")]
    Invalid(#[from] serde_json::Error),
    /// Written by a newer agent.
    #[error(
        "manifest schema version {0} is newer than this agent understands ({SCHEMA_VERSION}); use a newer airf-agent"
    )]
    TooNew(u32),
}

impl Manifest {
    /// Parses and checks a manifest (untrusted bytes).
    pub fn parse(bytes: &[u8]) -> Result<Self, ManifestError> {
        let m: Manifest = serde_json::from_slice(bytes)?;
        if m.schema_version > SCHEMA_VERSION {
            return Err(ManifestError::TooNew(m.schema_version));
        }
        Ok(m)
    }

    /// Pretty JSON, as stored.
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::source::block_device::DiskKind;
    use proptest::prelude::*;

    pub(crate) fn sample() -> Manifest {
        Manifest {
            schema_version: SCHEMA_VERSION,
            tool: Tool::default(),
            case: "IR-1".into(),
            kind: "disk".into(),
            status: EvidenceStatus::Complete,
            host: HostFacts {
                hostname: "h".into(),
                kernel_release: "6.1".into(),
                ..HostFacts::default()
            },
            source: SourceFacts::Disk(DiskFacts {
                path: "/dev/loop0".into(),
                canonical_path: "/dev/loop0".into(),
                kind: DiskKind::BlockDevice,
                size: 10,
                sector_size: 512,
                device_number: Some("7:0".into()),
                model: None,
                serial: None,
                ebs_volume_id: None,
                loop_backing_file: None,
            }),
            started_at: time::OffsetDateTime::UNIX_EPOCH,
            finished_at: time::OffsetDateTime::UNIX_EPOCH,
            raw: RawFacts {
                size: 10,
                sha256: "00".repeat(32),
            },
            compressed: CompressedFacts {
                format: "zstd-seekable".into(),
                size: 5,
                sha256: "11".repeat(32),
                level: 1,
                frame_size: 4 << 20,
                frames: 1,
            },
            image: StoredObject {
                location: "x".into(),
                ..StoredObject::default()
            },
            unreadable: BadRanges::default(),
            agent: AgentFootprint {
                peak_rss_bytes: 1,
                threads: 2,
            },
        }
    }

    #[test]
    fn round_trips() -> Result<(), ManifestError> {
        let m = sample();
        assert_eq!(Manifest::parse(&m.to_json())?, m);
        Ok(())
    }

    #[test]
    fn newer_schema_is_refused() {
        let mut m = sample();
        m.schema_version = SCHEMA_VERSION + 1;
        assert!(matches!(
            Manifest::parse(&m.to_json()),
            Err(ManifestError::TooNew(_))
        ));
    }

    proptest! {
        #[test]
        fn parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Manifest::parse(&bytes);
        }

        #[test]
        fn corrupted_json_never_panics(pos in 0usize..2000, byte in any::<u8>()) {
            let mut json = sample().to_json();
            let len = json.len();
            if let Some(b) = json.get_mut(pos % len) { *b = byte; }
            let _ = Manifest::parse(&json);
        }
    }
}
