//! The zstd seekable format: independent frames plus a seek table at the end.
//!
//! Each chunk of the source becomes one complete zstd frame (with its content size and XXH64
//! checksum), so frames can be compressed on all cores in any order and concatenated in source
//! order. The seek table is a skippable frame (ignored by `zstd -d`) that lists each frame's
//! compressed and decompressed size, so a reader can jump to any offset; see the zstd
//! repository's `contrib/seekable_format/zstd_seekable_compression_format.md`.

use std::io;

pub mod parse;

/// Magic of the skippable frame that holds the seek table.
pub const SKIPPABLE_MAGIC: u32 = 0x184D_2A5E;
/// Magic at the very end of a seekable stream.
pub const SEEKABLE_MAGIC: u32 = 0x8F92_EAB1;
/// The format caps one frame's decompressed size at 1 GiB.
pub const MAX_FRAME_SIZE: usize = 1 << 30;

/// Compresses one chunk into one self-contained zstd frame. One per compression thread.
pub struct FrameCompressor {
    inner: zstd::bulk::Compressor<'static>,
}

impl std::fmt::Debug for FrameCompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameCompressor").finish_non_exhaustive()
    }
}

impl FrameCompressor {
    /// A compressor at zstd `level` writing content sizes and frame checksums.
    pub fn new(level: i32) -> io::Result<Self> {
        let mut inner = zstd::bulk::Compressor::new(level)?;
        inner.include_checksum(true)?;
        inner.include_contentsize(true)?;
        Ok(Self { inner })
    }

    /// Compresses `chunk` into `out` (cleared first) as one complete frame.
    pub fn compress_into(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        out.clear();
        out.reserve(zstd::zstd_safe::compress_bound(chunk.len()));
        self.inner.compress_to_buffer(chunk, out)?;
        Ok(())
    }
}

/// The seek table, built up frame by frame as frames are written in order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SeekTable {
    entries: Vec<(u32, u32)>,
}

/// A frame too large for the seek table's 32-bit fields.
#[derive(Debug, thiserror::Error)]
#[error("frame of {0} bytes does not fit the seekable format's 32-bit size fields")]
pub struct FrameTooLarge(pub usize);

impl SeekTable {
    /// Records the next frame's compressed and decompressed sizes.
    pub fn push(&mut self, compressed: usize, decompressed: usize) -> Result<(), FrameTooLarge> {
        let c = u32::try_from(compressed).map_err(|_| FrameTooLarge(compressed))?;
        let d = u32::try_from(decompressed).map_err(|_| FrameTooLarge(decompressed))?;
        self.entries.push((c, d));
        Ok(())
    }

    /// Number of frames recorded.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The recorded `(compressed, decompressed)` sizes, in frame order.
    pub fn entries(&self) -> &[(u32, u32)] {
        &self.entries
    }

    /// True when no frame was recorded.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Size in bytes of the serialized table.
    pub fn encoded_len(&self) -> usize {
        8 + self.entries.len() * 8 + 9
    }

    /// Serializes the table as the trailing skippable frame (no per-frame checksums: each zstd
    /// frame already carries its own XXH64).
    pub fn encode(&self) -> Result<Vec<u8>, FrameTooLarge> {
        let len = self.encoded_len();
        let payload = u32::try_from(len - 8).map_err(|_| FrameTooLarge(len))?;
        let frames = u32::try_from(self.entries.len()).map_err(|_| FrameTooLarge(len))?;
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(&SKIPPABLE_MAGIC.to_le_bytes());
        out.extend_from_slice(&payload.to_le_bytes());
        for (c, d) in &self.entries {
            out.extend_from_slice(&c.to_le_bytes());
            out.extend_from_slice(&d.to_le_bytes());
        }
        out.extend_from_slice(&frames.to_le_bytes());
        out.push(0); // descriptor: no checksums
        out.extend_from_slice(&SEEKABLE_MAGIC.to_le_bytes());
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, SeekFrom};

    fn compress_seekable(data: &[u8], frame: usize) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
        let mut c = FrameCompressor::new(3)?;
        let mut table = SeekTable::default();
        let mut out = Vec::new();
        let mut buf = Vec::new();
        for chunk in data.chunks(frame) {
            c.compress_into(chunk, &mut buf)?;
            table.push(buf.len(), chunk.len())?;
            out.extend_from_slice(&buf);
        }
        out.extend_from_slice(&table.encode()?);
        Ok(out)
    }

    fn sample(len: usize) -> Vec<u8> {
        let mut x = 0x9E37_79B9u32;
        (0..len)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                if (i / 4096) % 3 == 0 {
                    0
                } else {
                    (x % 16) as u8 + b'a'
                }
            })
            .collect()
    }

    #[test]
    fn plain_zstd_decoder_reads_the_whole_stream() -> Result<(), Box<dyn std::error::Error>> {
        let data = sample(1_000_000);
        let packed = compress_seekable(&data, 64 * 1024)?;
        let mut out = Vec::new();
        zstd::stream::read::Decoder::new(packed.as_slice())?.read_to_end(&mut out)?;
        assert_eq!(out, data);
        Ok(())
    }

    #[test]
    fn an_independent_seekable_reader_finds_every_frame() -> Result<(), Box<dyn std::error::Error>>
    {
        let data = sample(1_000_000);
        let frame = 64 * 1024;
        let packed = compress_seekable(&data, frame)?;
        let mut cursor = std::io::Cursor::new(packed.clone());
        let table = zeekstd::SeekTable::from_seekable(&mut cursor)?;
        assert_eq!(table.num_frames() as usize, data.len().div_ceil(frame));
        // Read one range from the middle through zeekstd's seekable decoder.
        let mut decoder = zeekstd::Decoder::new(std::io::Cursor::new(packed))?;
        let start = 300_000u64;
        decoder.seek(SeekFrom::Start(start))?;
        let mut got = vec![0u8; 100_000];
        decoder.read_exact(&mut got)?;
        assert_eq!(got.as_slice(), &data[300_000..400_000]);
        Ok(())
    }

    #[test]
    fn empty_stream_is_just_a_table() -> Result<(), Box<dyn std::error::Error>> {
        let table = SeekTable::default();
        let bytes = table.encode()?;
        assert_eq!(bytes.len(), 17);
        let mut out = Vec::new();
        zstd::stream::read::Decoder::new(bytes.as_slice())?.read_to_end(&mut out)?;
        assert!(out.is_empty());
        Ok(())
    }
}
