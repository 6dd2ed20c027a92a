//! Where compressed evidence goes: S3 (multipart), a local directory, or stdout.
//!
//! A sink receives the compressed stream in order. Only [`ImageSink::finish`] makes the image
//! visible as whole; [`ImageSink::abort`] removes every trace of a partial one.

pub mod local;
pub mod s3;
pub mod stdout;

pub use airf_evidence::stored::{AbortReport, StoredObject};

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
    /// The S3 part size cannot work for this source.
    #[error(transparent)]
    PartSize(#[from] crate::part_size::PartSizeError),
    /// An injected failure (test doubles only).
    #[cfg(any(test, feature = "test-util"))]
    #[error("{0}")]
    Injected(String),
}

/// A destination for one compressed image.
pub trait ImageSink: Send {
    /// Appends compressed bytes.
    fn write(&mut self, data: &[u8]) -> Result<(), SinkError>;
    /// Makes the image whole and visible.
    fn finish(&mut self) -> Result<StoredObject, SinkError>;
    /// Discards the partial image.
    fn abort(&mut self) -> AbortReport;
    /// What went oddly but was recovered (e.g. a lost response), for the run's result.
    fn take_warnings(&mut self) -> Vec<String> {
        Vec::new()
    }
}

/// An in-memory sink for tests, which can fail on purpose.
#[cfg(any(test, feature = "test-util"))]
#[derive(Debug, Default)]
pub struct MemorySink {
    /// Everything written.
    pub bytes: Vec<u8>,
    /// Fail on the n-th write (tests).
    pub fail_after: Option<usize>,
    writes: usize,
}

#[cfg(any(test, feature = "test-util"))]
impl MemorySink {
    /// A sink whose writes fail after the first `n`.
    pub fn failing_after(n: usize) -> Self {
        Self {
            fail_after: Some(n),
            ..Self::default()
        }
    }
}

#[cfg(any(test, feature = "test-util"))]
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
