//! Where compressed evidence goes: S3 (multipart), a local directory, or stdout.
//!
//! A sink receives the compressed stream in order. Only [`ImageSink::finish`] makes the image
//! visible as whole; [`ImageSink::abort`] removes every trace of a partial one.

pub mod local;
pub mod s3;
pub mod stdout;

use serde::{Deserialize, Serialize};

/// Why a sink failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// An S3 call failed; the message names the operation, the object and the fix.
    #[error("{0}")]
    S3(String),
    /// A local write failed.
    #[error("writing {path} failed: {error}")]
    Io {
        /// File being written.
        path: String,
        /// The OS error.
        #[source]
        error: std::io::Error,
    },
    /// An injected failure (tests).
    #[error("{0}")]
    Injected(String),
}

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

/// A destination for one compressed image.
pub trait ImageSink: Send {
    /// Appends compressed bytes.
    fn write(&mut self, data: &[u8]) -> Result<(), SinkError>;
    /// Makes the image whole and visible.
    fn finish(&mut self) -> Result<StoredObject, SinkError>;
    /// Discards the partial image.
    fn abort(&mut self) -> AbortReport;
}

/// An in-memory sink, for tests and for callers that want the bytes.
#[derive(Debug, Default)]
pub struct MemorySink {
    /// Everything written.
    pub bytes: Vec<u8>,
    /// Fail on the n-th write (tests).
    pub fail_after: Option<usize>,
    writes: usize,
}

impl MemorySink {
    /// A sink whose writes fail after the first `n`.
    pub fn failing_after(n: usize) -> Self {
        Self {
            fail_after: Some(n),
            ..Self::default()
        }
    }
}

impl ImageSink for MemorySink {
    fn write(&mut self, data: &[u8]) -> Result<(), SinkError> {
        self.writes += 1;
        if self.fail_after.is_some_and(|n| self.writes > n) {
            return Err(SinkError::Injected(format!(
                "injected failure on write {}",
                self.writes
            )));
        }
        self.bytes.extend_from_slice(data);
        Ok(())
    }

    fn finish(&mut self) -> Result<StoredObject, SinkError> {
        Ok(StoredObject {
            location: "memory".into(),
            ..StoredObject::default()
        })
    }

    fn abort(&mut self) -> AbortReport {
        self.bytes.clear();
        AbortReport {
            clean: true,
            detail: "discarded".into(),
        }
    }
}
