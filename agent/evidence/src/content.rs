//! What a memory image was found to hold: zero pages per RAM range and where the running
//! kernel's banner is. The agent counts these while the image streams (see its
//! `memory::content`); an image without its kernel's banner is *hollow*.

use serde::{Deserialize, Serialize};

use crate::ram::RamRange;

/// Content of one RAM range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeContent {
    /// First physical address.
    pub start: u64,
    /// Last physical address (inclusive).
    pub end: u64,
    /// Pages (4 KiB, physically aligned; a partial page at an edge counts as one).
    pub pages: u64,
    /// Pages whose bytes are all zero.
    pub zero_pages: u64,
    /// Bytes of the zero run that ends the range (0 when its last page holds data).
    pub zero_tail_bytes: u64,
    /// Bytes of the longest zero run inside the range, its tail included.
    pub longest_zero_run_bytes: u64,
    /// The zero tail is far longer than any other zero run in RAM would explain: the source
    /// probably stopped reading this range and zero-filled the rest.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub zero_tail_suspect: bool,
}

/// What the memory image holds, as the manifest records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryContent {
    /// The text searched for: the running kernel's banner, or `Linux version ` (the prefix of
    /// every Linux banner) when it could not be read.
    pub banner_searched: String,
    /// How many times it occurs in the image.
    pub banner_count: u64,
    /// Physical addresses of the first occurrences (at most 16).
    pub banner_addresses: Vec<u64>,
    /// The kernel's read-only data, where its own banner is (from `/proc/iomem`), when listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_rodata: Option<RamRange>,
    /// Occurrences inside `kernel_rodata` (absent when it is not known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub banner_in_kernel_rodata: Option<u64>,
    /// Pages in the image.
    pub pages: u64,
    /// All-zero pages in the image.
    pub zero_pages: u64,
    /// Per RAM range, in image order.
    pub ranges: Vec<RangeContent>,
}

impl MemoryContent {
    /// Why the image cannot be called complete, in one line; None when the banner is in it.
    pub fn hollow_reason(&self) -> Option<String> {
        let missing = match (self.kernel_rodata, self.banner_in_kernel_rodata) {
            (Some(r), Some(0)) => format!(
                "the kernel's own banner is not in the image (it lives in the kernel's read-only data at {:#x}-{:#x}; \
                 {} copies elsewhere do not prove the kernel was captured)",
                r.start, r.end, self.banner_count
            ),
            _ if self.banner_count == 0 => {
                "the running kernel's banner is not in the image".to_owned()
            }
            _ => return None,
        };
        let suspect: Vec<String> = self
            .ranges
            .iter()
            .filter(|r| r.zero_tail_suspect)
            .map(|r| {
                format!(
                    "range {:#x}-{:#x} ends in {} MiB of zeros",
                    r.start,
                    r.end,
                    r.zero_tail_bytes >> 20
                )
            })
            .collect();
        Some(format!(
            "{missing} ({} of {} pages are zero{}): the source lost memory (LiME zero-fills a range when a write \
             stalls), so the image is hollow and not evidence of this kernel",
            self.zero_pages,
            self.pages,
            if suspect.is_empty() {
                String::new()
            } else {
                format!("; {}", suspect.join("; "))
            }
        ))
    }
}
