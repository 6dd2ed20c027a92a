//! What a manifest records about an EBS snapshot read through the EBS direct APIs.

use serde::{Deserialize, Serialize};

/// Facts about an EBS snapshot source: who made it, from what, and what the EBS direct APIs
/// listed. The image is the whole volume: blocks the snapshot does not list are zeros.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotFacts {
    /// `snap-…`.
    pub snapshot_id: String,
    /// The volume the snapshot was taken of (`vol-…`; `vol-ffffffff` for a copied snapshot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_id: Option<String>,
    /// The instance the evidence is filed under (`--instance`, else the `airf:instance` tag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// Region the snapshot was read in.
    pub region: String,
    /// Account that owns the snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
    /// When the snapshot was started (its point in time), RFC 3339.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub start_time: Option<time::OffsetDateTime>,
    /// The snapshot's description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Whether the snapshot is encrypted.
    pub encrypted: bool,
    /// The KMS key that encrypts it, when encrypted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    /// The snapshot's tags, sorted by key.
    #[serde(default)]
    pub tags: Vec<(String, String)>,
    /// Volume size in GiB, as the EBS direct APIs report it.
    pub volume_size_gib: u64,
    /// Volume size in bytes (the raw image's size).
    pub volume_size: u64,
    /// Bytes per block (524,288 on AWS).
    pub block_size: u32,
    /// Blocks `ListSnapshotBlocks` listed (written blocks); every other block is zeros.
    pub listed_blocks: u64,
    /// How the blocks were read.
    pub reads: BlockReads,
    /// Blocks changed since an earlier snapshot of the same volume (`--baseline`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<ChangedBlocks>,
}

/// How the blocks were read: request counts a reviewer can check against CloudTrail.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockReads {
    /// `GetSnapshotBlock` requests that returned a verified block.
    pub blocks_read: u64,
    /// Blocks whose SHA-256 did not match `x-amz-Checksum` and were read again.
    pub checksum_retries: u64,
    /// Blocks read again after a throttling, server or connection error the SDK gave up on.
    pub request_retries: u64,
    /// `ListSnapshotBlocks` pages.
    pub list_pages: u64,
    /// Concurrent `GetSnapshotBlock` requests allowed.
    pub concurrency: u32,
    /// `GetSnapshotBlock` requests per second allowed.
    pub max_rate: u32,
}

/// The blocks that differ between a baseline snapshot and this one (`ListChangedBlocks`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangedBlocks {
    /// The earlier snapshot.
    pub baseline_snapshot_id: String,
    /// Number of changed blocks.
    pub changed_blocks: u64,
    /// Changed blocks as `[first block index, count]` runs, ascending.
    pub ranges: Vec<(u64, u64)>,
    /// Runs left out of `ranges` to keep the manifest small (their blocks are still counted).
    #[serde(default)]
    pub omitted_ranges: u64,
    /// The lowest index the next `push` may give (order check while building).
    #[serde(skip)]
    next_allowed: Option<u64>,
    /// Whether `ranges` is full and runs are only counted.
    #[serde(skip)]
    full: bool,
}

/// At most this many runs are listed in a manifest; the rest are counted in `omitted_ranges`.
pub const MAX_CHANGED_RANGES: usize = 100_000;

impl ChangedBlocks {
    /// Starts an empty map against `baseline`.
    pub fn new(baseline: &str) -> Self {
        Self {
            baseline_snapshot_id: baseline.to_owned(),
            changed_blocks: 0,
            ranges: Vec::new(),
            omitted_ranges: 0,
            next_allowed: None,
            full: false,
        }
    }

    /// Adds block `index`; indexes must come in ascending order (the API's order), and a
    /// repeated or out-of-order index is refused so a hostile listing cannot double-count.
    pub fn push(&mut self, index: u64) -> Result<(), String> {
        if let Some(next) = self.next_allowed
            && index < next
        {
            return Err(format!(
                "block {index} listed after block {}: the listing is not ascending",
                next - 1
            ));
        }
        let extends = self.next_allowed == Some(index);
        self.next_allowed = Some(index.saturating_add(1));
        self.changed_blocks += 1;
        if extends {
            if !self.full
                && let Some(last) = self.ranges.last_mut()
            {
                last.1 += 1;
            }
            return Ok(());
        }
        if self.ranges.len() >= MAX_CHANGED_RANGES {
            self.full = true;
            self.omitted_ranges += 1;
        } else {
            self.ranges.push((index, 1));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_merged_and_disorder_refused() {
        let mut c = ChangedBlocks::new("snap-1");
        for i in [0, 1, 2, 7, 9, 10] {
            c.push(i).unwrap();
        }
        assert_eq!(c.ranges, vec![(0, 3), (7, 1), (9, 2)]);
        assert_eq!(c.changed_blocks, 6);
        assert!(c.push(10).is_err());
        assert!(c.push(3).is_err());
    }

    proptest::proptest! {
        #[test]
        fn runs_expand_back_to_the_listed_blocks(set in proptest::collection::btree_set(0u64..5_000, 0..400)) {
            let mut c = ChangedBlocks::new("snap-1");
            for &i in &set {
                c.push(i).unwrap();
            }
            let expanded: Vec<u64> = c.ranges.iter().flat_map(|&(s, n)| s..s + n).collect();
            proptest::prop_assert_eq!(expanded, set.iter().copied().collect::<Vec<_>>());
            proptest::prop_assert_eq!(c.changed_blocks, set.len() as u64);
            // Runs never touch: each is separated from the next by at least one unchanged block.
            for w in c.ranges.windows(2) {
                proptest::prop_assert!(w[0].0 + w[0].1 < w[1].0);
            }
        }
    }
}
