//! A disk that fails on purpose: an in-memory image whose chosen sectors return EIO, the way a
//! failing drive's do. For tests and drills of the read-error path, since a real failing disk
//! is not something CI can order (the VM tests add qemu's blkdebug on a real kernel).

use std::io;

use super::ReadAt;

/// An in-memory disk whose `bad_sectors` fail with EIO on every read that touches them.
#[derive(Debug, Clone)]
pub struct FaultyDisk {
    /// The disk's contents.
    pub data: Vec<u8>,
    /// Sector size in bytes.
    pub sector: usize,
    /// Sector numbers that cannot be read.
    pub bad_sectors: Vec<u64>,
}

impl ReadAt for FaultyDisk {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let end = (offset + buf.len() as u64).min(self.data.len() as u64);
        if offset >= end {
            return Ok(0);
        }
        let sector = self.sector.max(1) as u64;
        let (first, last) = (offset / sector, (end - 1) / sector);
        if self.bad_sectors.iter().any(|s| (first..=last).contains(s)) {
            return Err(io::Error::from_raw_os_error(nix::libc::EIO));
        }
        let src = self
            .data
            .get(offset as usize..end as usize)
            .unwrap_or_default();
        buf.get_mut(..src.len())
            .unwrap_or_default()
            .copy_from_slice(src);
        Ok(src.len())
    }
}
