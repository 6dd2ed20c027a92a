//! Sector-exact reads of a block device with `O_DIRECT`, for the last stage of read-error
//! retries.
//!
//! Buffered reads of a block device go through the page cache, which fills whole pages (4 KiB):
//! one bad 512-byte sector makes the whole page fail, and a sector-by-sector retry through the
//! cache would zero-fill seven good sectors with it. `O_DIRECT` sends each sector-sized read to
//! the device as it is, so only the sectors that really fail are lost (like `ddrescue -d`).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::ReadAt;

/// Buffer alignment for `O_DIRECT`: a page satisfies every device's DMA alignment.
const MEM_ALIGN: usize = 4096;

/// A block device opened a second time with `O_DIRECT`, with the buffered handle as a fallback
/// for devices or file systems that refuse direct I/O (`EINVAL`).
#[derive(Debug)]
pub struct DirectReader<D = File, B = File> {
    direct: D,
    buffered: B,
    sector: u64,
}

impl DirectReader {
    /// Opens `path` read-only with `O_DIRECT`; `buffered` is the already open handle.
    pub fn open(path: &Path, buffered: File, sector: usize) -> io::Result<Self> {
        let direct = OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_DIRECT)
            .open(path)?;
        Ok(Self::new(direct, buffered, sector))
    }
}

impl<D: ReadAt, B: ReadAt> DirectReader<D, B> {
    /// A reader over `direct` (aligned reads only) that falls back to `buffered`.
    pub fn new(direct: D, buffered: B, sector: usize) -> Self {
        Self {
            direct,
            buffered,
            sector: sector.max(512) as u64,
        }
    }
}

impl<D: ReadAt, B: ReadAt> ReadAt for DirectReader<D, B> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // The device wants sector-aligned offsets and lengths and an aligned buffer: read the
        // covering sectors into an aligned bounce buffer and copy out what was asked.
        let start = offset / self.sector * self.sector;
        let end = (offset + buf.len() as u64).div_ceil(self.sector) * self.sector;
        let span = usize::try_from(end - start).map_err(io::Error::other)?;
        let mut bounce = vec![0u8; span + MEM_ALIGN];
        let pad = bounce.as_ptr().align_offset(MEM_ALIGN);
        let Some(aligned) = bounce.get_mut(pad..pad + span) else {
            return self.buffered.read_at(buf, offset);
        };
        let n = match self.direct.read_at(aligned, start) {
            Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => {
                return self.buffered.read_at(buf, offset);
            }
            other => other?,
        };
        let skip = usize::try_from(offset - start).map_err(io::Error::other)?;
        let got = n.saturating_sub(skip).min(buf.len());
        let (Some(dst), Some(src)) = (buf.get_mut(..got), aligned.get(skip..skip + got)) else {
            return Ok(0);
        };
        dst.copy_from_slice(src);
        Ok(got)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::faulty::FaultyDisk;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 253) as u8).collect()
    }

    /// Fails unless the request is sector-aligned in offset, length and memory, as O_DIRECT does.
    struct Strict(FaultyDisk);
    impl ReadAt for Strict {
        fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
            let s = self.0.sector;
            if !offset.is_multiple_of(s as u64)
                || !buf.len().is_multiple_of(s)
                || buf.as_ptr().align_offset(MEM_ALIGN) != 0
            {
                return Err(io::Error::from_raw_os_error(nix::libc::EINVAL));
            }
            self.0.read_at(buf, offset)
        }
    }

    /// Refuses everything like a file system without O_DIRECT support.
    struct Refuses;
    impl ReadAt for Refuses {
        fn read_at(&self, _: &mut [u8], _: u64) -> io::Result<usize> {
            Err(io::Error::from_raw_os_error(nix::libc::EINVAL))
        }
    }

    #[test]
    fn unaligned_requests_are_served_through_aligned_reads() {
        let disk = FaultyDisk {
            data: pattern(8192),
            sector: 512,
            bad_sectors: vec![],
        };
        let r = DirectReader::new(Strict(disk.clone()), Refuses, 512);
        for (off, len) in [
            (0usize, 512usize),
            (100, 50),
            (511, 2),
            (1000, 3000),
            (8000, 192),
        ] {
            let mut buf = vec![0u8; len];
            assert!(matches!(r.read_at(&mut buf, off as u64), Ok(n) if n == len));
            assert_eq!(Some(buf.as_slice()), disk.data.get(off..off + len));
        }
        let mut past = [0u8; 16];
        assert!(matches!(r.read_at(&mut past, 9000), Ok(0)));
    }

    #[test]
    fn bad_sector_fails_alone_and_einval_falls_back() {
        let disk = FaultyDisk {
            data: pattern(4096),
            sector: 512,
            bad_sectors: vec![3],
        };
        let r = DirectReader::new(Strict(disk.clone()), disk.clone(), 512);
        let mut buf = [0u8; 512];
        assert!(r.read_at(&mut buf, 3 * 512).is_err());
        assert!(matches!(r.read_at(&mut buf, 4 * 512), Ok(512)));
        let r = DirectReader::new(Refuses, disk.clone(), 512);
        assert!(matches!(r.read_at(&mut buf, 0), Ok(512)));
        assert_eq!(Some(buf.as_slice()), disk.data.get(..512));
    }
}
