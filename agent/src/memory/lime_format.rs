//! The LiME range header: 32 bytes before each physical range of a LiME-format image.
//!
//! Layout (little endian): magic `0x4C694D45` ("EMiL" on disk), version `1`, first physical
//! address, last physical address (inclusive), eight reserved zero bytes. Volatility 3, LiME
//! itself and avml read this format.

/// Size of one header.
pub const HEADER_SIZE: usize = 32;
/// `LiME` magic, as a little-endian u32.
pub const MAGIC: u32 = 0x4C69_4D45;
/// The only version there is.
pub const VERSION: u32 = 1;

/// One range header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimeHeader {
    /// First physical address of the range.
    pub start: u64,
    /// Last physical address of the range (inclusive).
    pub end: u64,
}

/// Why 32 bytes are not a LiME header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimeHeaderError {
    /// Wrong magic.
    #[error("bad LiME magic {0:#010x} (want {MAGIC:#010x})")]
    Magic(u32),
    /// Unknown version.
    #[error("unsupported LiME version {0} (want {VERSION})")]
    Version(u32),
    /// End before start.
    #[error("LiME range {start:#x}-{end:#x} ends before it starts")]
    Inverted {
        /// Start.
        start: u64,
        /// End.
        end: u64,
    },
    /// A range that covers all 2^64 addresses cannot have a byte length.
    #[error("LiME range {start:#x}-{end:#x} is too large")]
    TooLarge {
        /// Start.
        start: u64,
        /// End.
        end: u64,
    },
    /// Reserved bytes not zero.
    #[error("LiME header reserved bytes are not zero")]
    Reserved,
    /// Fewer than 32 bytes.
    #[error("LiME header truncated: {0} of {HEADER_SIZE} bytes")]
    Short(usize),
}

impl LimeHeader {
    /// The header of the range `start..start+len`; None when `len` is 0 or the range overflows.
    pub fn for_range(start: u64, len: u64) -> Option<Self> {
        let end = start.checked_add(len.checked_sub(1)?)?;
        Some(Self { start, end })
    }

    /// Bytes of memory that follow the header.
    pub fn size(&self) -> Result<u64, LimeHeaderError> {
        let span = self
            .end
            .checked_sub(self.start)
            .ok_or(LimeHeaderError::Inverted {
                start: self.start,
                end: self.end,
            })?;
        span.checked_add(1).ok_or(LimeHeaderError::TooLarge {
            start: self.start,
            end: self.end,
        })
    }

    /// The 32 header bytes.
    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut out = [0u8; HEADER_SIZE];
        let fields: [&[u8]; 4] = [
            &MAGIC.to_le_bytes(),
            &VERSION.to_le_bytes(),
            &self.start.to_le_bytes(),
            &self.end.to_le_bytes(),
        ];
        let mut at = 0;
        for f in fields {
            if let Some(dst) = out.get_mut(at..at + f.len()) {
                dst.copy_from_slice(f);
            }
            at += f.len();
        }
        out
    }

    /// Parses and validates a header (untrusted bytes).
    pub fn read(bytes: &[u8]) -> Result<Self, LimeHeaderError> {
        let b: &[u8; HEADER_SIZE] = bytes
            .get(..HEADER_SIZE)
            .and_then(|s| s.try_into().ok())
            .ok_or(LimeHeaderError::Short(bytes.len()))?;
        let [
            m0,
            m1,
            m2,
            m3,
            v0,
            v1,
            v2,
            v3,
            s0,
            s1,
            s2,
            s3,
            s4,
            s5,
            s6,
            s7,
            e0,
            e1,
            e2,
            e3,
            e4,
            e5,
            e6,
            e7,
            reserved @ ..,
        ] = *b;
        let magic = u32::from_le_bytes([m0, m1, m2, m3]);
        if magic != MAGIC {
            return Err(LimeHeaderError::Magic(magic));
        }
        let version = u32::from_le_bytes([v0, v1, v2, v3]);
        if version != VERSION {
            return Err(LimeHeaderError::Version(version));
        }
        if reserved != [0u8; 8] {
            return Err(LimeHeaderError::Reserved);
        }
        let h = Self {
            start: u64::from_le_bytes([s0, s1, s2, s3, s4, s5, s6, s7]),
            end: u64::from_le_bytes([e0, e1, e2, e3, e4, e5, e6, e7]),
        };
        h.size()?;
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn matches_lime_on_disk_bytes() {
        // The first bytes of a dump LiME 1.9.1 sent from the test guest.
        let h = LimeHeader::for_range(0x1000, 0x9_f000);
        assert_eq!(
            h,
            Some(LimeHeader {
                start: 0x1000,
                end: 0x9_ffff
            })
        );
        let bytes = h.unwrap().encode();
        assert_eq!(
            bytes.get(..8),
            Some(&[0x45, 0x4d, 0x69, 0x4c, 1, 0, 0, 0][..])
        );
        assert_eq!(LimeHeader::read(&bytes).map(|h| h.size()), Ok(Ok(0x9_f000)));
    }

    #[test]
    fn refuses_bad_headers() {
        let good = LimeHeader {
            start: 0x100000,
            end: 0x1ffdffff,
        }
        .encode();
        let mut magic = good;
        magic[0] = 0;
        assert!(matches!(
            LimeHeader::read(&magic),
            Err(LimeHeaderError::Magic(_))
        ));
        let mut version = good;
        version[4] = 2;
        assert_eq!(LimeHeader::read(&version), Err(LimeHeaderError::Version(2)));
        let mut reserved = good;
        reserved[31] = 1;
        assert_eq!(LimeHeader::read(&reserved), Err(LimeHeaderError::Reserved));
        let inverted = LimeHeader { start: 10, end: 9 }.encode();
        assert!(matches!(
            LimeHeader::read(&inverted),
            Err(LimeHeaderError::Inverted { .. })
        ));
        let all = LimeHeader {
            start: 0,
            end: u64::MAX,
        }
        .encode();
        assert!(matches!(
            LimeHeader::read(&all),
            Err(LimeHeaderError::TooLarge { .. })
        ));
        assert_eq!(
            LimeHeader::read(&good[..31]),
            Err(LimeHeaderError::Short(31))
        );
        assert_eq!(LimeHeader::for_range(5, 0), None);
        assert_eq!(LimeHeader::for_range(u64::MAX, 2), None);
    }

    proptest! {
        #[test]
        fn round_trips(start in any::<u64>(), len in 1u64..=u64::MAX) {
            if let Some(h) = LimeHeader::for_range(start, len) {
                prop_assert_eq!(LimeHeader::read(&h.encode()), Ok(h));
                prop_assert_eq!(h.size(), Ok(len));
            }
        }

        #[test]
        fn read_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = LimeHeader::read(&bytes);
        }
    }
}
