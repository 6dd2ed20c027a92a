//! Choosing the S3 part size so the 10,000-part limit can never be hit.

/// S3's minimum part size (all parts but the last).
pub const MIN_PART: u64 = 5 << 20;
/// S3's maximum part size.
pub const MAX_PART: u64 = 5 << 30;
/// S3's maximum number of parts.
pub const MAX_PARTS: u64 = 10_000;
/// Default part size when the source is small enough.
pub const DEFAULT_PART: u64 = 8 << 20;
/// Parts we plan for, leaving head-room below [`MAX_PARTS`].
const PLANNED_PARTS: u64 = 9_000;

/// Largest compressed size a raw stream of `raw` bytes can have in `frame`-sized zstd frames
/// (incompressible data grows slightly), seek table included.
pub fn compressed_bound(raw: u64, frame: u64) -> u64 {
    let frames = raw.div_ceil(frame.max(1));
    let per_frame =
        zstd::zstd_safe::compress_bound(usize::try_from(frame).unwrap_or(usize::MAX)) as u64;
    frames
        .saturating_mul(per_frame)
        .saturating_add(frames.saturating_mul(8))
        .saturating_add(17)
}

/// Why a part size cannot work.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PartSizeError {
    /// Below S3's minimum or above its maximum.
    #[error("--part-size {0} is outside S3's limits (5 MiB to 5 GiB)")]
    OutOfRange(u64),
    /// Too small for this source.
    #[error(
        "--part-size {given} would need more than 10,000 parts for this {raw}-byte source; use at least {needed} bytes or leave --part-size unset"
    )]
    TooSmall {
        /// Requested.
        given: u64,
        /// Source size.
        raw: u64,
        /// Smallest that works.
        needed: u64,
    },
    /// The source exceeds what one S3 object can hold.
    #[error("a {0}-byte source cannot fit one S3 object (10,000 parts of 5 GiB)")]
    SourceTooLarge(u64),
}

/// The part size for a source of `raw` bytes (None = unknown), honouring a requested size.
pub fn choose(raw: Option<u64>, frame: u64, requested: Option<u64>) -> Result<u64, PartSizeError> {
    let bound = raw.map(|r| compressed_bound(r, frame));
    let needed = bound.map_or(MIN_PART, |b| {
        b.div_ceil(PLANNED_PARTS)
            .next_multiple_of(1 << 20)
            .max(MIN_PART)
    });
    if needed > MAX_PART {
        return Err(PartSizeError::SourceTooLarge(raw.unwrap_or(0)));
    }
    match requested {
        Some(p) if !(MIN_PART..=MAX_PART).contains(&p) => Err(PartSizeError::OutOfRange(p)),
        Some(p) => match bound {
            Some(b) if b.div_ceil(p) > MAX_PARTS => Err(PartSizeError::TooSmall {
                given: p,
                raw: raw.unwrap_or(0),
                needed,
            }),
            _ => Ok(p),
        },
        None if raw.is_none() => Ok(64 << 20),
        None => Ok(needed.max(DEFAULT_PART)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const FRAME: u64 = 4 << 20;

    #[test]
    fn small_sources_get_the_default() {
        assert_eq!(choose(Some(4 << 30), FRAME, None), Ok(DEFAULT_PART));
        assert_eq!(choose(Some(40 << 30), FRAME, None), Ok(DEFAULT_PART));
    }

    #[test]
    fn five_tebibytes_fit() {
        let p = choose(Some(5 << 40), FRAME, None).unwrap();
        assert!(p <= MAX_PART && compressed_bound(5 << 40, FRAME).div_ceil(p) <= MAX_PARTS);
    }

    #[test]
    fn bad_requests_are_refused() {
        assert_eq!(
            choose(Some(1 << 30), FRAME, Some(1 << 20)),
            Err(PartSizeError::OutOfRange(1 << 20))
        );
        assert!(matches!(
            choose(Some(1 << 40), FRAME, Some(MIN_PART)),
            Err(PartSizeError::TooSmall { .. })
        ));
        assert!(matches!(
            choose(Some(60 << 40), FRAME, None),
            Err(PartSizeError::SourceTooLarge(_))
        ));
    }

    proptest! {
        #[test]
        fn chosen_size_never_exceeds_the_part_limit(raw in 0u64..(5u64 << 40)) {
            let p = choose(Some(raw), FRAME, None).unwrap();
            prop_assert!((MIN_PART..=MAX_PART).contains(&p));
            prop_assert!(compressed_bound(raw, FRAME).div_ceil(p) <= MAX_PARTS);
        }
    }
}
