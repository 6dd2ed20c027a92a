//! Reading through media errors, the way dc3dd and ddrescue do.
//!
//! A chunk is first read with large reads. When one fails with a media error (EIO and friends),
//! the failed span is retried in 64 KiB reads, and what still fails is retried sector by sector,
//! through a sector-exact reader when one is given (see [`super::direct`]).
//! Sectors that cannot be read are zero-filled in the output and recorded as a [`BadRange`],
//! so the image keeps its geometry and the manifest says exactly what is missing.

use std::io;

pub use airf_evidence::unreadable::{BadRange, BadRanges};

use super::ReadAt;

/// Size of the intermediate retry reads between a whole chunk and a single sector.
const RETRY_BLOCK: usize = 64 * 1024;

/// Errors that stop an acquisition: the source itself is gone or unusable.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// A read failed with an error that is not a media error (e.g. the device vanished).
    #[error("reading {source_name} at offset {offset} failed: {error}")]
    Fatal {
        /// The source's path or label.
        source_name: String,
        /// Offset of the failed read.
        offset: u64,
        /// The OS error.
        #[source]
        error: io::Error,
    },
}

/// Whether an error means "these sectors are unreadable" rather than "the source is unusable".
pub fn is_media_error(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(
            nix::libc::EIO
                | nix::libc::ENODATA
                | nix::libc::EILSEQ
                | nix::libc::EBADMSG
                | nix::libc::EREMOTEIO
                | nix::libc::EFAULT
        )
    )
}

/// Reads fixed chunks of a [`ReadAt`] source, zero-filling and recording unreadable sectors.
pub struct ChunkReader<R> {
    inner: R,
    /// Used for the sector-by-sector stage instead of `inner` (e.g. an `O_DIRECT` handle, so a
    /// failing page of the page cache does not take its good sectors with it).
    sector_reader: Option<Box<dyn ReadAt>>,
    name: String,
    size: u64,
    sector: usize,
}

impl<R> std::fmt::Debug for ChunkReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkReader")
            .field("name", &self.name)
            .field("size", &self.size)
            .field("sector", &self.sector)
            .field("sector_reader", &self.sector_reader.is_some())
            .finish_non_exhaustive()
    }
}

impl<R: ReadAt> ChunkReader<R> {
    /// Wraps `inner`, which is `size` bytes long and fails at the granularity of `sector` bytes.
    pub fn new(inner: R, name: impl Into<String>, size: u64, sector: usize) -> Self {
        Self {
            inner,
            sector_reader: None,
            name: name.into(),
            size,
            sector: sector.max(1),
        }
    }

    /// Retries single sectors through `reader` rather than the main reader.
    pub fn with_sector_reader(mut self, reader: Box<dyn ReadAt>) -> Self {
        self.sector_reader = Some(reader);
        self
    }

    /// The source's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Fills `buf` with the source's bytes at `offset` (`buf` must not reach past the end).
    /// Unreadable spans are zero-filled and added to `bad`.
    pub fn read_chunk(
        &self,
        offset: u64,
        buf: &mut [u8],
        bad: &mut BadRanges,
    ) -> Result<(), ReadError> {
        match self.read_span(offset, buf, buf.len()) {
            Ok(()) => Ok(()),
            Err(SpanError::Media { .. }) => self.salvage(offset, buf, bad),
            Err(SpanError::Eof { at }) => {
                self.zero_from(offset, buf, at, bad);
                Ok(())
            }
            Err(SpanError::Fatal { at, error }) => Err(self.fatal(at, error)),
        }
    }

    /// Retries a failed chunk in 64 KiB reads, and failed 64 KiB blocks sector by sector.
    fn salvage(&self, offset: u64, buf: &mut [u8], bad: &mut BadRanges) -> Result<(), ReadError> {
        let block = RETRY_BLOCK.max(self.sector) / self.sector * self.sector;
        let mut done = 0usize;
        while done < buf.len() {
            let len = block.min(buf.len() - done);
            let at = offset + done as u64;
            let Some(part) = buf.get_mut(done..done + len) else {
                break;
            };
            match self.read_span(at, part, len) {
                Ok(()) => {}
                Err(SpanError::Media { .. }) => self.salvage_sectors(at, part, bad)?,
                Err(SpanError::Eof { at: eof }) => {
                    self.zero_from(offset, buf, eof, bad);
                    return Ok(());
                }
                Err(SpanError::Fatal { at, error }) => return Err(self.fatal(at, error)),
            }
            done += len;
        }
        Ok(())
    }

    fn salvage_sectors(
        &self,
        offset: u64,
        buf: &mut [u8],
        bad: &mut BadRanges,
    ) -> Result<(), ReadError> {
        for (i, sector) in buf.chunks_mut(self.sector).enumerate() {
            let at = offset + (i * self.sector) as u64;
            let len = sector.len();
            let reader: &dyn ReadAt = match &self.sector_reader {
                Some(r) => r.as_ref(),
                None => &self.inner,
            };
            match read_span(reader, at, sector, len) {
                Ok(()) => {}
                Err(SpanError::Media { errno, cause }) => {
                    sector.fill(0);
                    bad.record(at, len as u64, errno, &cause);
                }
                Err(SpanError::Eof { at: eof }) => self.zero_from(at, sector, eof, bad),
                Err(SpanError::Fatal { at, error }) => return Err(self.fatal(at, error)),
            }
        }
        Ok(())
    }

    /// Zero-fills `buf` (which starts at `offset`) from source offset `from` on, recording the
    /// gap as a source that ended before its announced size.
    fn zero_from(&self, offset: u64, buf: &mut [u8], from: u64, bad: &mut BadRanges) {
        let skip = usize::try_from(from.saturating_sub(offset))
            .unwrap_or(buf.len())
            .min(buf.len());
        if let Some(tail) = buf.get_mut(skip..) {
            tail.fill(0);
            bad.record(
                from,
                tail.len() as u64,
                None,
                "source ended before its announced size",
            );
        }
    }

    fn read_span(&self, offset: u64, buf: &mut [u8], len: usize) -> Result<(), SpanError> {
        read_span(&self.inner, offset, buf, len)
    }

    fn fatal(&self, offset: u64, error: io::Error) -> ReadError {
        ReadError::Fatal {
            source_name: self.name.clone(),
            offset,
            error,
        }
    }
}

/// Reads exactly `len` bytes at `offset` into `buf`, classifying the first failure.
fn read_span<R: ReadAt + ?Sized>(
    reader: &R,
    offset: u64,
    buf: &mut [u8],
    len: usize,
) -> Result<(), SpanError> {
    let mut filled = 0usize;
    while filled < len {
        let at = offset + filled as u64;
        let Some(dst) = buf.get_mut(filled..len) else {
            break;
        };
        match reader.read_at(dst, at) {
            Ok(0) => return Err(SpanError::Eof { at }),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_media_error(&e) => {
                return Err(SpanError::Media {
                    errno: e.raw_os_error(),
                    cause: e.to_string(),
                });
            }
            Err(error) => return Err(SpanError::Fatal { at, error }),
        }
    }
    Ok(())
}

enum SpanError {
    Media { errno: Option<i32>, cause: String },
    Eof { at: u64 },
    Fatal { at: u64, error: io::Error },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::faulty::FaultyDisk;
    use proptest::prelude::*;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8 + 1).collect()
    }

    #[test]
    fn clean_source_reads_whole() {
        let disk = FaultyDisk {
            data: pattern(1 << 20),
            sector: 512,
            bad_sectors: vec![],
        };
        let r = ChunkReader::new(disk.clone(), "t", 1 << 20, 512);
        let mut buf = vec![0u8; 1 << 20];
        let mut bad = BadRanges::default();
        assert!(r.read_chunk(0, &mut buf, &mut bad).is_ok());
        assert_eq!(buf, disk.data);
        assert!(bad.is_empty());
    }

    #[test]
    fn bad_sectors_are_zeroed_and_listed_exactly() {
        let disk = FaultyDisk {
            data: pattern(1 << 20),
            sector: 512,
            bad_sectors: vec![3, 4, 5, 700],
        };
        let r = ChunkReader::new(disk.clone(), "t", 1 << 20, 512);
        let mut buf = vec![0xAAu8; 1 << 20];
        let mut bad = BadRanges::default();
        assert!(r.read_chunk(0, &mut buf, &mut bad).is_ok());
        let offsets: Vec<(u64, u64)> = bad.ranges.iter().map(|b| (b.offset, b.length)).collect();
        assert_eq!(offsets, vec![(3 * 512, 3 * 512), (700 * 512, 512)]);
        assert_eq!(
            bad.ranges.first().and_then(|b| b.errno),
            Some(nix::libc::EIO)
        );
        assert_eq!(bad.total_bytes, 4 * 512);
        let mut expected = disk.data.clone();
        for s in [3usize, 4, 5, 700] {
            expected[s * 512..(s + 1) * 512].fill(0);
        }
        assert_eq!(buf, expected);
    }

    /// Through a page cache a bad sector fails its whole page; the sector reader (O_DIRECT on a
    /// real device) keeps the page's good sectors.
    #[test]
    fn sector_reader_keeps_good_sectors_of_a_failing_page() {
        let data = pattern(64 * 1024);
        let cached = FaultyDisk {
            data: data.clone(),
            sector: 4096,
            bad_sectors: vec![2, 9],
        };
        let exact = FaultyDisk {
            data: data.clone(),
            sector: 512,
            bad_sectors: vec![17, 18, 75],
        };
        let mut bad = BadRanges::default();
        let mut buf = vec![0xAAu8; data.len()];
        let r = ChunkReader::new(cached.clone(), "t", data.len() as u64, 512)
            .with_sector_reader(Box::new(exact));
        assert!(r.read_chunk(0, &mut buf, &mut bad).is_ok());
        let got: Vec<(u64, u64)> = bad.ranges.iter().map(|b| (b.offset, b.length)).collect();
        assert_eq!(got, vec![(17 * 512, 1024), (75 * 512, 512)]);

        // Without it, whole pages are lost: what the sector reader exists to prevent.
        let mut bad = BadRanges::default();
        let r = ChunkReader::new(cached, "t", data.len() as u64, 512);
        assert!(r.read_chunk(0, &mut buf, &mut bad).is_ok());
        assert_eq!(bad.total_bytes, 2 * 4096);
    }

    #[test]
    fn short_source_is_zero_filled_and_recorded() {
        let disk = FaultyDisk {
            data: pattern(1000),
            sector: 512,
            bad_sectors: vec![],
        };
        let r = ChunkReader::new(disk, "t", 4096, 512);
        let mut buf = vec![0xAAu8; 4096];
        let mut bad = BadRanges::default();
        assert!(r.read_chunk(0, &mut buf, &mut bad).is_ok());
        assert_eq!(bad.ranges.len(), 1);
        assert_eq!(
            bad.ranges.first().map(|b| (b.offset, b.length, b.errno)),
            Some((1000, 3096, None))
        );
        assert!(buf[1000..].iter().all(|&b| b == 0));
    }

    #[test]
    fn non_media_error_is_fatal() {
        struct Gone;
        impl ReadAt for Gone {
            fn read_at(&self, _: &mut [u8], _: u64) -> io::Result<usize> {
                Err(io::Error::from_raw_os_error(nix::libc::ENODEV))
            }
        }
        let r = ChunkReader::new(Gone, "gone", 4096, 512);
        let mut buf = vec![0u8; 4096];
        let err = r.read_chunk(0, &mut buf, &mut BadRanges::default());
        assert!(matches!(err, Err(ReadError::Fatal { offset: 0, .. })));
    }

    #[test]
    fn merging_keeps_separate_causes_apart() {
        let mut bad = BadRanges::default();
        bad.record(0, 512, Some(5), "EIO");
        bad.record(512, 512, Some(5), "EIO");
        bad.record(1024, 512, None, "eof");
        assert_eq!(bad.ranges.len(), 2);
        assert_eq!(bad.total_bytes, 1536);
    }

    proptest! {
        /// Whatever sectors fail, the output is the input with exactly those sectors zeroed,
        /// and the recorded ranges cover exactly those sectors.
        #[test]
        fn any_bad_sector_set_is_reported_exactly(
            bad_set in proptest::collection::btree_set(0u64..256, 0..20),
            chunk_sectors in 1usize..300,
        ) {
            let sector = 512usize;
            let len = 256 * sector;
            let disk = FaultyDisk { data: pattern(len), sector, bad_sectors: bad_set.iter().copied().collect() };
            let r = ChunkReader::new(disk.clone(), "p", len as u64, sector);
            let mut out = vec![0u8; len];
            let mut bad = BadRanges::default();
            let chunk = chunk_sectors * sector;
            let mut off = 0usize;
            while off < len {
                let n = chunk.min(len - off);
                let dst = &mut out[off..off + n];
                prop_assert!(r.read_chunk(off as u64, dst, &mut bad).is_ok());
                off += n;
            }
            let mut expected = disk.data.clone();
            let mut expected_sectors = Vec::new();
            for &s in &bad_set {
                let s = s as usize;
                expected[s * sector..(s + 1) * sector].fill(0);
                expected_sectors.push(s as u64);
            }
            prop_assert_eq!(out, expected);
            let mut reported = Vec::new();
            for b in &bad.ranges {
                prop_assert_eq!(b.offset % sector as u64, 0);
                prop_assert_eq!(b.length % sector as u64, 0);
                for s in 0..b.length / sector as u64 {
                    reported.push(b.offset / sector as u64 + s);
                }
            }
            prop_assert_eq!(reported, expected_sectors);
        }
    }
}
