//! Source ranges that could not be read: zero-filled in the image and listed in the manifest.

use serde::{Deserialize, Serialize};

/// Most bad ranges kept in the manifest; past this only the count and byte total grow.
const MAX_RECORDED_RANGES: usize = 100_000;

/// A span of the source that could not be read and was zero-filled in the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadRange {
    /// Byte offset of the first unreadable byte in the source (and in the raw image).
    pub offset: u64,
    /// Number of unreadable bytes, zero-filled in the image.
    pub length: u64,
    /// The OS error number of the failed read (5 = EIO); absent when the source ended early.
    pub errno: Option<i32>,
    /// The error in words, e.g. "Input/output error (os error 5)".
    pub cause: String,
}

/// Every unreadable span of one acquisition, adjacent spans with the same cause merged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadRanges {
    /// The recorded spans, in offset order.
    pub ranges: Vec<BadRange>,
    /// Total unreadable bytes, including spans beyond [`MAX_RECORDED_RANGES`].
    pub total_bytes: u64,
    /// Spans not listed because the list was full.
    pub omitted: u64,
}

impl BadRanges {
    /// Records `length` unreadable bytes at `offset`, merging with the previous span when they
    /// touch and share a cause.
    pub fn record(&mut self, offset: u64, length: u64, errno: Option<i32>, cause: &str) {
        if length == 0 {
            return;
        }
        self.total_bytes = self.total_bytes.saturating_add(length);
        if let Some(last) = self.ranges.last_mut()
            && last.offset.saturating_add(last.length) == offset
            && last.errno == errno
        {
            last.length = last.length.saturating_add(length);
            return;
        }
        if self.ranges.len() >= MAX_RECORDED_RANGES {
            self.omitted = self.omitted.saturating_add(1);
            return;
        }
        self.ranges.push(BadRange {
            offset,
            length,
            errno,
            cause: cause.to_owned(),
        });
    }

    /// Appends another list recorded over a later part of the same source.
    pub fn extend(&mut self, other: BadRanges) {
        for r in other.ranges {
            self.record(r.offset, r.length, r.errno, &r.cause);
        }
        self.omitted = self.omitted.saturating_add(other.omitted);
    }

    /// True when every byte was read.
    pub fn is_empty(&self) -> bool {
        self.total_bytes == 0
    }
}
