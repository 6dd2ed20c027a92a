//! The producer of a disk acquisition: the disk front to back in chunks, through media errors.

use super::ReadAt;
use super::block_device::drop_cached;
use super::resilient::{BadRanges, ChunkReader};
use crate::pipeline::{EvidenceProducer, ProduceError, Producer};

/// Reads a disk front to back in chunks, through media errors.
#[derive(Debug)]
pub struct DiskProducer<R> {
    reader: ChunkReader<R>,
    offset: u64,
    bad: BadRanges,
    drop_cache: Option<std::fs::File>,
}

impl<R: ReadAt> DiskProducer<R> {
    /// Wraps a chunk reader; `drop_cache`, when given, gets POSIX_FADV_DONTNEED after each read.
    pub fn new(reader: ChunkReader<R>, drop_cache: Option<std::fs::File>) -> Self {
        Self {
            reader,
            offset: 0,
            bad: BadRanges::default(),
            drop_cache,
        }
    }
}

impl<R: ReadAt> Producer for DiskProducer<R> {
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize, ProduceError> {
        let left = self.reader.size().saturating_sub(self.offset);
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        let Some(dst) = buf.get_mut(..n) else {
            return Ok(0);
        };
        if n == 0 {
            return Ok(0);
        }
        self.reader.read_chunk(self.offset, dst, &mut self.bad)?;
        if let Some(f) = &self.drop_cache {
            drop_cached(f, self.offset, n as u64);
        }
        self.offset += n as u64;
        Ok(n)
    }
}

impl<R: ReadAt> EvidenceProducer for DiskProducer<R> {
    fn unreadable(&self) -> BadRanges {
        self.bad.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::faulty::FaultyDisk;

    #[test]
    fn reads_to_the_end_and_lists_bad_sectors() {
        let data: Vec<u8> = (0..8192u32).map(|i| (i % 251) as u8).collect();
        let disk = FaultyDisk {
            data: data.clone(),
            sector: 512,
            bad_sectors: vec![3],
        };
        let mut p = DiskProducer::new(ChunkReader::new(disk, "faulty", 8192, 512), None);
        let mut out = Vec::new();
        let mut buf = vec![0u8; 3000];
        loop {
            let n = p.fill(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        let mut want = data;
        want[3 * 512..4 * 512].fill(0);
        assert_eq!(out, want);
        let bad = p.unreadable();
        assert_eq!((bad.total_bytes, bad.ranges.len()), (512, 1));
        assert_eq!(bad.ranges[0].offset, 3 * 512);
    }
}
