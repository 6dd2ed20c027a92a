//! One pass over a stored image: hash the stored bytes, walk its zstd frames, hash what they
//! decompress to, and keep the trailing seek table.
//!
//! Frames are decoded one at a time with one reused decompression context, so each frame's
//! stored and decompressed sizes are measured rather than taken from the seek table: the format
//! check then compares the table with the frames it describes. A skippable frame is read (up to
//! a bound) only to find the seek table; anything else where a frame should start ends decoding,
//! and the rest of the object is still hashed.

use std::io::Read;

use zstd::zstd_safe::{DCtx, InBuffer, OutBuffer};

use crate::hash::Sha256;
use crate::seekable::SKIPPABLE_MAGIC;
use crate::seekable::parse::{self, ParsedSeekTable};

const ZSTD_MAGIC: u32 = 0xFD2F_B528;
const SKIPPABLE_RANGE: std::ops::RangeInclusive<u32> = 0x184D_2A50..=0x184D_2A5F;
const BUF: usize = 1 << 20;

/// Stored and decompressed bytes of one zstd frame, as measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// Stored bytes.
    pub compressed: u64,
    /// Decompressed bytes.
    pub decompressed: u64,
}

/// The seek table, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableFound {
    /// No skippable frame at the end.
    Missing,
    /// The last frame, parsed; `offset` is where it starts.
    Parsed {
        /// Its entries.
        table: ParsedSeekTable,
        /// Stored bytes before it.
        offset: u64,
    },
    /// A skippable frame that is not a valid seek table, or is not last, or is too large.
    Invalid(String),
}

/// What one pass measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamFacts {
    /// Stored bytes.
    pub stored_size: u64,
    /// SHA-256 of the stored bytes, lowercase hex.
    pub stored_sha256: String,
    /// Decompressed bytes.
    pub raw_size: u64,
    /// SHA-256 of the decompressed stream, lowercase hex.
    pub raw_sha256: String,
    /// The zstd frames decoded, in order (up to a decoding error).
    pub frames: Vec<Frame>,
    /// The seek table.
    pub table: TableFound,
    /// Why decoding stopped early.
    pub decode_error: Option<String>,
}

/// Hashes and counts what is read through it.
struct Tee<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(buf.get(..n).unwrap_or_default());
        self.bytes += n as u64;
        Ok(n)
    }
}

/// A read buffer that can look ahead a few bytes (a frame's magic) and counts what is consumed.
struct Input<R> {
    inner: Tee<R>,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
    consumed: u64,
}

impl<R: Read> Input<R> {
    fn available(&self) -> &[u8] {
        self.buf.get(self.start..self.end).unwrap_or_default()
    }

    /// Reads until at least `n` bytes are buffered or the end is reached.
    fn fill(&mut self, n: usize) -> std::io::Result<&[u8]> {
        while self.end - self.start < n && !self.eof {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            let free = self.buf.get_mut(self.end..).unwrap_or_default();
            match self.inner.read(free) {
                Ok(0) => self.eof = true,
                Ok(k) => self.end += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(self.available())
    }

    fn consume(&mut self, n: usize) {
        let n = n.min(self.end - self.start);
        self.start += n;
        self.consumed += n as u64;
    }

    /// Consumes `n` bytes, keeping them when `keep` is given. False when the end came first.
    fn take(&mut self, mut n: u64, mut keep: Option<&mut Vec<u8>>) -> std::io::Result<bool> {
        while n > 0 {
            let want = usize::try_from(n).unwrap_or(usize::MAX).min(BUF);
            let got = self.fill(1)?;
            if got.is_empty() {
                return Ok(false);
            }
            let k = want.min(got.len());
            if let Some(v) = keep.as_deref_mut() {
                v.extend_from_slice(got.get(..k).unwrap_or_default());
            }
            self.consume(k);
            n -= k as u64;
        }
        Ok(true)
    }
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Reads `reader` to the end. `max_table` bounds the seek table kept in memory (a larger
/// skippable frame is hashed but not parsed). Fails only when reading fails.
pub fn walk(reader: impl Read, max_table: u64) -> std::io::Result<StreamFacts> {
    let mut input = Input {
        inner: Tee {
            inner: reader,
            hasher: Sha256::new(),
            bytes: 0,
        },
        buf: vec![0u8; BUF],
        start: 0,
        end: 0,
        eof: false,
        consumed: 0,
    };
    let mut raw = Sha256::new();
    let mut raw_size = 0u64;
    let mut frames = Vec::new();
    let mut table = TableFound::Missing;
    let mut decode_error = None;
    let mut dctx = DCtx::create();
    let mut out = vec![0u8; BUF];
    loop {
        let offset = input.consumed;
        let head = input.fill(8)?;
        if head.is_empty() {
            break;
        }
        let Some(magic) = le32(head, 0) else {
            decode_error = Some(format!(
                "{} stray bytes at offset {offset} where a frame should start",
                head.len()
            ));
            break;
        };
        if SKIPPABLE_RANGE.contains(&magic) {
            let size = le32(head, 4).map(u64::from);
            let Some(size) = size else {
                decode_error = Some(format!("truncated skippable frame at offset {offset}"));
                break;
            };
            let mut bytes = Vec::new();
            let keep = magic == SKIPPABLE_MAGIC && size + 8 <= max_table;
            if !input.take(8 + size, keep.then_some(&mut bytes))? {
                decode_error = Some(format!("truncated skippable frame at offset {offset}"));
                break;
            }
            let last = input.fill(1)?.is_empty();
            table = if !last {
                TableFound::Invalid(format!(
                    "a skippable frame at offset {offset} is not the last frame"
                ))
            } else if magic != SKIPPABLE_MAGIC {
                TableFound::Invalid(format!(
                    "the last frame is a skippable frame with magic {magic:#010x}, not a seek table"
                ))
            } else if !keep {
                TableFound::Invalid(format!(
                    "the seek table at offset {offset} is {} bytes, more than the manifest's frame count allows ({max_table})",
                    size + 8
                ))
            } else {
                match parse::parse(&bytes) {
                    Ok(t) => TableFound::Parsed { table: t, offset },
                    Err(e) => TableFound::Invalid(format!("at offset {offset}: {e}")),
                }
            };
            continue;
        }
        if magic != ZSTD_MAGIC {
            decode_error = Some(format!(
                "no zstd frame at offset {offset} (magic {magic:#010x})"
            ));
            break;
        }
        if !matches!(table, TableFound::Missing) {
            // Data after a skippable frame: that frame was not the trailing seek table.
            table =
                TableFound::Invalid(format!("zstd data follows a skippable frame (at {offset})"));
        }
        let mut decompressed = 0u64;
        let done = loop {
            let got = input.fill(1)?;
            let at_end = got.is_empty();
            let mut inb = InBuffer::around(got);
            let mut outb = OutBuffer::around(out.as_mut_slice());
            let hint = dctx.decompress_stream(&mut outb, &mut inb);
            let (used, produced) = (inb.pos(), outb.pos());
            raw.update(out.get(..produced).unwrap_or_default());
            decompressed += produced as u64;
            input.consume(used);
            match hint {
                Ok(0) => break Ok(()),
                Ok(_) if at_end && used == 0 && produced == 0 => {
                    break Err(format!("the zstd frame at offset {offset} is truncated"));
                }
                Ok(_) => {}
                Err(code) => {
                    break Err(format!(
                        "the zstd frame at offset {offset} does not decode: {}",
                        zstd::zstd_safe::get_error_name(code)
                    ));
                }
            }
        };
        raw_size += decompressed;
        if let Err(e) = done {
            decode_error = Some(e);
            break;
        }
        frames.push(Frame {
            compressed: input.consumed - offset,
            decompressed,
        });
    }
    // Hash the stored bytes to the end even when decoding stopped early.
    let rest = input.available().len();
    input.consume(rest);
    std::io::copy(&mut input.inner, &mut std::io::sink())?;
    Ok(StreamFacts {
        stored_size: input.inner.bytes,
        stored_sha256: hex::encode(input.inner.hasher.finalize()),
        raw_size,
        raw_sha256: hex::encode(raw.finalize()),
        frames,
        table,
        decode_error,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::seekable::{FrameCompressor, SeekTable};

    pub(crate) fn seekable(data: &[u8], frame: usize) -> Vec<u8> {
        let mut c = FrameCompressor::new(3).unwrap();
        let mut table = SeekTable::default();
        let mut out = Vec::new();
        let mut buf = Vec::new();
        for chunk in data.chunks(frame) {
            c.compress_into(chunk, &mut buf).unwrap();
            table.push(buf.len(), chunk.len()).unwrap();
            out.extend_from_slice(&buf);
        }
        out.extend_from_slice(&table.encode().unwrap());
        out
    }

    fn data(n: usize) -> Vec<u8> {
        (0..n as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect()
    }

    #[test]
    fn frames_and_table_are_measured() {
        let d = data(100_000);
        let stored = seekable(&d, 16_384);
        let f = walk(stored.as_slice(), 1 << 20).unwrap();
        assert_eq!(f.decode_error, None);
        assert_eq!(f.frames.len(), 7);
        assert!(f.frames[..6].iter().all(|fr| fr.decompressed == 16_384));
        assert_eq!(f.frames[6].decompressed, 100_000 - 6 * 16_384);
        assert_eq!(f.raw_size, 100_000);
        assert_eq!(f.raw_sha256, hex::encode(Sha256::digest(&d)));
        assert_eq!(f.stored_sha256, hex::encode(Sha256::digest(&stored)));
        let TableFound::Parsed { table, offset } = &f.table else {
            panic!("{:?}", f.table)
        };
        assert_eq!(table.entries.len(), 7);
        assert_eq!(
            *offset,
            f.frames.iter().map(|fr| fr.compressed).sum::<u64>()
        );
        for (e, fr) in table.entries.iter().zip(&f.frames) {
            assert_eq!(u64::from(e.compressed), fr.compressed);
        }
    }

    /// A reader that returns one byte at a time: frame boundaries must not depend on how the
    /// bytes arrive.
    struct Trickle<'a>(&'a [u8]);
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            match (self.0.split_first(), buf.first_mut()) {
                (Some((b, rest)), Some(slot)) => {
                    *slot = *b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    #[test]
    fn byte_by_byte_reads_give_the_same_facts() {
        let stored = seekable(&data(30_000), 4096);
        let whole = walk(stored.as_slice(), 1 << 20).unwrap();
        let trickled = walk(Trickle(&stored), 1 << 20).unwrap();
        assert_eq!(whole, trickled);
    }

    #[test]
    fn a_single_frame_rewrite_has_no_table() {
        let d = data(50_000);
        let stored = zstd::encode_all(d.as_slice(), 19).unwrap();
        let f = walk(stored.as_slice(), 1 << 20).unwrap();
        assert_eq!(f.decode_error, None);
        assert_eq!(f.frames.len(), 1);
        assert_eq!(f.table, TableFound::Missing);
        assert_eq!(f.raw_sha256, hex::encode(Sha256::digest(&d)));
    }

    #[test]
    fn damage_is_reported_and_everything_still_hashed() {
        let stored = seekable(&data(40_000), 8192);
        // Truncated in the middle of a frame.
        let cut = &stored[..stored.len() / 2];
        let f = walk(cut, 1 << 20).unwrap();
        assert!(
            f.decode_error.as_deref().unwrap().contains("truncated"),
            "{f:?}"
        );
        assert_eq!(f.stored_size, cut.len() as u64);
        assert_eq!(f.stored_sha256, hex::encode(Sha256::digest(cut)));
        // Garbage after the table.
        let mut tail = stored.clone();
        tail.extend_from_slice(b"garbage!");
        let f = walk(tail.as_slice(), 1 << 20).unwrap();
        assert!(
            f.decode_error.as_deref().unwrap().contains("no zstd frame"),
            "{f:?}"
        );
        assert!(matches!(f.table, TableFound::Invalid(_)), "{:?}", f.table);
        // A table larger than allowed is not kept.
        let f = walk(stored.as_slice(), 16).unwrap();
        assert!(matches!(&f.table, TableFound::Invalid(m) if m.contains("more than")));
        // A flipped byte inside a frame: the frame checksum or the decoder catches it.
        let mut flipped = stored;
        flipped[100] ^= 0x40;
        let f = walk(flipped.as_slice(), 1 << 20).unwrap();
        assert!(
            f.decode_error.is_some() || f.raw_sha256 != hex::encode(Sha256::digest(data(40_000)))
        );
    }
}
