//! Evidence sources: anything the pipeline can read at an offset.
//!
//! A source knows its size up front (so the S3 part size can be chosen before the first byte)
//! and is read in fixed-size chunks through [`resilient::ChunkReader`], which turns media errors
//! into zero-filled, recorded [`resilient::BadRange`]s instead of aborting the acquisition.

pub mod block_device;
pub mod direct;
pub mod disk_producer;
#[cfg(any(test, feature = "test-util"))]
pub mod faulty;
pub mod resilient;

use std::io;
use std::os::unix::fs::FileExt;

/// Positioned reads, the one primitive every source needs.
///
/// Implemented for [`std::fs::File`]; tests implement it with readers that fail on purpose.
pub trait ReadAt: Send + Sync {
    /// Reads up to `buf.len()` bytes at `offset`, like `pread(2)`.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
}

impl ReadAt for std::fs::File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        FileExt::read_at(self, buf, offset)
    }
}
