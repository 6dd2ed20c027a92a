//! Where stored evidence is, and what happened to a partial upload.

use serde::{Deserialize, Serialize};

/// Where a finished image is and how the store identifies it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredObject {
    /// `s3://bucket/key`, a local path, or `-` for stdout.
    pub location: String,
    /// S3 bucket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// S3 key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// S3 ETag as returned by the server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// S3 version id when the bucket is versioned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// Number of multipart parts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parts: Option<u32>,
    /// Part size in bytes (every part but the last).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub part_size: Option<u64>,
    /// S3's composite checksum: base64 SHA-256 of the parts' SHA-256s, then `-<parts>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum_sha256: Option<String>,
}

/// What happened to a partial image on abort.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbortReport {
    /// True when nothing of the partial image is left behind.
    pub clean: bool,
    /// What was done, or the command that finishes the clean-up by hand.
    pub detail: String,
}
