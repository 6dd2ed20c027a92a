//! Reading a seek table back: the trailing skippable frame of a seekable zstd stream.
//!
//! The bytes come from stored evidence, which anyone with write access to the bucket could have
//! replaced, so they are untrusted: every length is checked before it is used and nothing here
//! can panic or allocate more than the frame it was given. The writer is [`super::SeekTable`];
//! this reader also accepts the per-frame checksums zstd's contrib writer can add.
//!
//! Layout (zstd's `contrib/seekable_format/zstd_seekable_compression_format.md`), little-endian:
//! skippable magic `0x184D2A5E`, payload length (u32), then per frame its compressed size,
//! decompressed size (u32 each) and, with the checksum flag, an XXH64 low half (u32); then the
//! footer: frame count (u32), descriptor (u8: bit 7 checksum flag, bits 2–6 reserved and zero),
//! seekable magic `0x8F92EAB1`.

use super::{SEEKABLE_MAGIC, SKIPPABLE_MAGIC};

/// Skippable frame header: magic and payload length.
pub const HEADER_LEN: usize = 8;
/// Footer: frame count, descriptor, seekable magic.
pub const FOOTER_LEN: usize = 9;

const CHECKSUM_FLAG: u8 = 0x80;
const RESERVED_BITS: u8 = 0x7C;

/// One frame as the table describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Stored bytes of the frame.
    pub compressed: u32,
    /// Bytes the frame decompresses to.
    pub decompressed: u32,
    /// Low 32 bits of the frame content's XXH64, when the table carries checksums.
    pub checksum: Option<u32>,
}

/// A seek table read from stored bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedSeekTable {
    /// One entry per frame, in stream order.
    pub entries: Vec<Entry>,
}

impl ParsedSeekTable {
    /// Sum of the frames' compressed sizes: the stored bytes before the table.
    pub fn compressed_total(&self) -> u64 {
        self.entries.iter().map(|e| u64::from(e.compressed)).sum()
    }

    /// Sum of the frames' decompressed sizes: the raw stream's length.
    pub fn decompressed_total(&self) -> u64 {
        self.entries.iter().map(|e| u64::from(e.decompressed)).sum()
    }
}

/// Why bytes are not a seek table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeekTableError {
    /// Shorter than an empty table.
    #[error("{0} bytes are too few for a seek table (an empty one has 17)")]
    TooShort(usize),
    /// Not the seek table's skippable frame.
    #[error("the frame starts with magic {0:#010x}, not the seek table's {SKIPPABLE_MAGIC:#010x}")]
    NotSkippable(u32),
    /// The header's payload length disagrees with the frame.
    #[error("the frame header announces {header} payload bytes, the frame holds {actual}")]
    LengthMismatch {
        /// From the header.
        header: u32,
        /// Present.
        actual: usize,
    },
    /// The footer does not end with the seekable magic.
    #[error("the table ends with {0:#010x}, not the seekable magic {SEEKABLE_MAGIC:#010x}")]
    NoSeekableMagic(u32),
    /// The descriptor sets bits the format reserves.
    #[error("the seek table descriptor {0:#04x} sets reserved bits")]
    ReservedBits(u8),
    /// The frame count does not fit the entries present.
    #[error(
        "the footer counts {frames} frames of {entry_len} bytes each, the table holds {room} bytes of entries"
    )]
    CountMismatch {
        /// Frame count from the footer.
        frames: u32,
        /// Bytes per entry (8, or 12 with checksums).
        entry_len: usize,
        /// Bytes between header and footer.
        room: usize,
    },
}

fn le32(bytes: &[u8], at: usize) -> Option<u32> {
    let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(b))
}

/// Parses one whole seek table frame (header, entries, footer).
pub fn parse(frame: &[u8]) -> Result<ParsedSeekTable, SeekTableError> {
    let len = frame.len();
    let short = SeekTableError::TooShort(len);
    if len < HEADER_LEN + FOOTER_LEN {
        return Err(short);
    }
    let magic = le32(frame, 0).ok_or(short.clone())?;
    if magic != SKIPPABLE_MAGIC {
        return Err(SeekTableError::NotSkippable(magic));
    }
    let header = le32(frame, 4).ok_or(short.clone())?;
    if usize::try_from(header).ok() != Some(len - HEADER_LEN) {
        return Err(SeekTableError::LengthMismatch {
            header,
            actual: len - HEADER_LEN,
        });
    }
    let footer = len - FOOTER_LEN;
    let end_magic = le32(frame, footer + 5).ok_or(short.clone())?;
    if end_magic != SEEKABLE_MAGIC {
        return Err(SeekTableError::NoSeekableMagic(end_magic));
    }
    let descriptor = *frame.get(footer + 4).ok_or(short.clone())?;
    if descriptor & RESERVED_BITS != 0 {
        return Err(SeekTableError::ReservedBits(descriptor));
    }
    let checksums = descriptor & CHECKSUM_FLAG != 0;
    let entry_len = if checksums { 12 } else { 8 };
    let frames = le32(frame, footer).ok_or(short.clone())?;
    let body = frame.get(HEADER_LEN..footer).ok_or(short)?;
    let fits = usize::try_from(frames)
        .ok()
        .and_then(|f| f.checked_mul(entry_len))
        == Some(body.len());
    if !fits {
        return Err(SeekTableError::CountMismatch {
            frames,
            entry_len,
            room: body.len(),
        });
    }
    let entries = body
        .chunks_exact(entry_len)
        .filter_map(|e| {
            Some(Entry {
                compressed: le32(e, 0)?,
                decompressed: le32(e, 4)?,
                checksum: if checksums { Some(le32(e, 8)?) } else { None },
            })
        })
        .collect();
    Ok(ParsedSeekTable { entries })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seekable::SeekTable;
    use proptest::prelude::*;

    fn encoded(entries: &[(u32, u32)]) -> Vec<u8> {
        let mut t = SeekTable::default();
        for (c, d) in entries {
            t.push(*c as usize, *d as usize).unwrap();
        }
        t.encode().unwrap()
    }

    #[test]
    fn an_empty_table_is_read() {
        let t = parse(&encoded(&[])).unwrap();
        assert!(t.entries.is_empty());
        assert_eq!((t.compressed_total(), t.decompressed_total()), (0, 0));
    }

    #[test]
    fn each_corruption_is_named() {
        let good = encoded(&[(10, 20), (5, 7)]);
        assert_eq!(parse(&good[..16]), Err(SeekTableError::TooShort(16)));

        let mut bad = good.clone();
        bad[0] ^= 1;
        assert!(matches!(parse(&bad), Err(SeekTableError::NotSkippable(_))));

        let mut bad = good.clone();
        bad[4] += 1;
        assert!(matches!(
            parse(&bad),
            Err(SeekTableError::LengthMismatch { .. })
        ));

        let mut bad = good.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(
            parse(&bad),
            Err(SeekTableError::NoSeekableMagic(_))
        ));

        let mut bad = good.clone();
        bad[good.len() - 5] = 0x04;
        assert_eq!(parse(&bad), Err(SeekTableError::ReservedBits(0x04)));

        // One frame more than the entries present.
        let mut bad = good.clone();
        bad[good.len() - 9] = 3;
        assert!(matches!(
            parse(&bad),
            Err(SeekTableError::CountMismatch { frames: 3, .. })
        ));
        // The checksum flag makes the same entries the wrong length.
        let mut bad = good;
        let at = bad.len() - 5;
        bad[at] = 0x80;
        assert!(matches!(
            parse(&bad),
            Err(SeekTableError::CountMismatch { entry_len: 12, .. })
        ));
    }

    /// An independent writer: zeekstd (its tables carry no checksums).
    #[test]
    fn a_table_from_another_writer_is_read() {
        use std::io::Write;
        let data: Vec<u8> = (0..50_000u32).map(|i| (i % 97) as u8).collect();
        let opts = zeekstd::EncodeOptions::new()
            .frame_size_policy(zeekstd::FrameSizePolicy::Uncompressed(8192));
        let mut out = Vec::new();
        let mut enc = zeekstd::Encoder::with_opts(&mut out, opts).unwrap();
        enc.write_all(&data).unwrap();
        enc.finish().unwrap();
        let frames = u32::from_le_bytes(out[out.len() - 9..out.len() - 5].try_into().unwrap());
        let table_len = 8 + frames as usize * 8 + 9;
        let t = parse(&out[out.len() - table_len..]).unwrap();
        assert_eq!(t.entries.len(), data.len().div_ceil(8192));
        assert_eq!(t.decompressed_total(), data.len() as u64);
        assert_eq!(t.compressed_total(), (out.len() - table_len) as u64);
    }

    /// Checksummed entries, laid out by hand from the format's description.
    #[test]
    fn a_table_with_checksums_is_read() {
        let mut f = SKIPPABLE_MAGIC.to_le_bytes().to_vec();
        f.extend_from_slice(&(2u32 * 12 + 9).to_le_bytes());
        for (c, d, x) in [(10u32, 20u32, 0xAABB_CCDDu32), (5, 7, 1)] {
            for v in [c, d, x] {
                f.extend_from_slice(&v.to_le_bytes());
            }
        }
        f.extend_from_slice(&2u32.to_le_bytes());
        f.push(0x80);
        f.extend_from_slice(&SEEKABLE_MAGIC.to_le_bytes());
        let t = parse(&f).unwrap();
        assert_eq!(
            t.entries,
            [
                Entry {
                    compressed: 10,
                    decompressed: 20,
                    checksum: Some(0xAABB_CCDD)
                },
                Entry {
                    compressed: 5,
                    decompressed: 7,
                    checksum: Some(1)
                }
            ]
        );
    }

    proptest! {
        #[test]
        fn never_panics_on_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse(&bytes);
        }

        /// Arbitrary bytes behind a valid header and footer: still no panic, and a table is
        /// returned only when the count fits exactly.
        #[test]
        fn never_panics_inside_a_plausible_frame(
            body in proptest::collection::vec(any::<u8>(), 0..120),
            frames in 0u32..20,
            descriptor in any::<u8>(),
        ) {
            let mut f = SKIPPABLE_MAGIC.to_le_bytes().to_vec();
            f.extend_from_slice(&((body.len() + FOOTER_LEN) as u32).to_le_bytes());
            f.extend_from_slice(&body);
            f.extend_from_slice(&frames.to_le_bytes());
            f.push(descriptor);
            f.extend_from_slice(&SEEKABLE_MAGIC.to_le_bytes());
            if let Ok(t) = parse(&f) {
                prop_assert_eq!(t.entries.len(), frames as usize);
            }
        }

        #[test]
        fn round_trips_with_the_writer(entries in proptest::collection::vec(any::<(u32, u32)>(), 0..300)) {
            let t = parse(&encoded(&entries)).unwrap();
            let back: Vec<(u32, u32)> = t.entries.iter().map(|e| (e.compressed, e.decompressed)).collect();
            prop_assert_eq!(back, entries);
            prop_assert!(t.entries.iter().all(|e| e.checksum.is_none()));
        }
    }
}
