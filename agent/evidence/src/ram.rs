//! Physical RAM ranges, as `/proc/iomem` and LiME headers give them.

use serde::{Deserialize, Serialize};

/// One physical range of RAM, `start..=end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RamRange {
    /// First physical address.
    pub start: u64,
    /// Last physical address (inclusive, as /proc/iomem and LiME write it).
    pub end: u64,
}

impl RamRange {
    /// Bytes in the range.
    pub fn size(&self) -> u64 {
        self.end.saturating_sub(self.start).saturating_add(1)
    }

    /// First address past the range (saturating at u64::MAX).
    pub fn end_exclusive(&self) -> u64 {
        self.end.saturating_add(1)
    }
}
