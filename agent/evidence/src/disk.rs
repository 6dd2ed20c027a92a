//! What a disk manifest records about its source.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// What kind of thing a disk source is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiskKind {
    /// A block device such as `/dev/nvme1n1` or `/dev/loop0`.
    BlockDevice,
    /// A regular file holding a disk image.
    File,
    /// A kind of disk source a newer agent knows.
    #[serde(other)]
    Unknown,
}

/// Facts about a disk source, recorded in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskFacts {
    /// The path as given on the command line.
    pub path: PathBuf,
    /// The path with symlinks resolved (e.g. `/dev/disk/by-id/...` → `/dev/nvme1n1`).
    pub canonical_path: PathBuf,
    /// Block device or image file.
    pub kind: DiskKind,
    /// Size in bytes.
    pub size: u64,
    /// Logical sector size in bytes: the unit of read retries and of bad ranges.
    pub sector_size: u32,
    /// `major:minor` of a block device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_number: Option<String>,
    /// Device model from sysfs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Device serial from sysfs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// The EBS volume id, derived from an EBS NVMe serial (`vol0123…` → `vol-0123…`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ebs_volume_id: Option<String>,
    /// For a loop device, the file behind it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loop_backing_file: Option<String>,
}
