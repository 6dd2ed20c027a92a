//! What is in a memory image: zero pages per RAM range and the kernel's banner, counted while
//! the image streams, so that an image whose memory is missing is never called complete.
//!
//! Why: a memory source can deliver exactly the right number of bytes with the memory itself
//! gone. LiME, when one page write takes longer than its `timeout` parameter (a slow upload
//! is enough), writes zeros for the rest of the range and carries on; the length, the headers
//! and both SHA-256s are then all correct, and only the content tells. Two facts decide:
//! - the running kernel's banner (the `/proc/version` text, which is the kernel's
//!   `linux_banner`, the string Volatility matches to pick symbols) must be in the image, and
//!   where `/proc/iomem` shows the kernel's read-only data ("Kernel rodata", where
//!   `linux_banner` lives), it must be found there: copies elsewhere (the agent's own heap,
//!   page cache) would survive a capture that lost the kernel. A capture of a running kernel
//!   that lacks its own banner has lost kernel memory: such an image is *hollow*, whatever
//!   else is right about it;
//! - per range, the all-zero pages and the zero run at the range's end. A tail run far longer
//!   than any other zero run in RAM is what a skipped range looks like; it is flagged.
//!
//! The scan walks the LiME layout (a 32-byte header per range, then the range's bytes) that
//! both memory sources produce, so offsets are reported as physical addresses.

use memchr::memmem::Finder;

pub use airf_evidence::content::{MemoryContent, RangeContent};

use super::iomem::RamRange;
use super::lime_format::HEADER_SIZE;

/// The page size zero pages are counted in.
pub const PAGE_SIZE: u64 = 4096;

/// What the image is searched for when `/proc/version` could not be read: the prefix of every
/// Linux banner.
pub const GENERIC_BANNER: &str = "Linux version ";

/// Banner addresses kept in the manifest; the rest are only counted.
const MAX_BANNER_ADDRESSES: usize = 16;

/// A zero tail shorter than this is never flagged: small ranges (the first MiB, ACPI holes)
/// end in zeros all the time.
const MIN_SUSPECT_TAIL: u64 = 16 << 20;

/// A zero tail is flagged when it is this many times longer than the longest zero run
/// anywhere else in RAM.
const SUSPECT_TAIL_FACTOR: u64 = 4;

/// A range no byte of which has been seen yet.
fn unread(r: RamRange) -> RangeContent {
    RangeContent {
        start: r.start,
        end: r.end,
        pages: 0,
        zero_pages: 0,
        zero_tail_bytes: 0,
        longest_zero_run_bytes: 0,
        zero_tail_suspect: false,
    }
}

/// The banner to search for, from `/proc/version` text (its trailing newline dropped).
pub fn banner_needle(proc_version: &str) -> String {
    let b = proc_version.trim_end_matches(['\n', '\r', '\0']);
    if b.starts_with(GENERIC_BANNER) {
        b.to_owned()
    } else {
        GENERIC_BANNER.to_owned()
    }
}

/// Scans a LiME-layout stream as it passes; feed it every byte in order, then [`finish`].
///
/// [`finish`]: ContentScanner::finish
#[derive(Debug)]
pub struct ContentScanner {
    finder: Finder<'static>,
    needle_len: usize,
    layout: Vec<RamRange>,
    /// Index of the range being read (== layout.len() once past the last).
    range: usize,
    /// Header bytes of the current range still to come.
    header_left: usize,
    /// Physical address of the next data byte.
    addr: u64,
    /// Whether the current page held only zeros so far, and where it began (None: not begun).
    page_zero: bool,
    page_start: Option<u64>,
    run: u64,
    ranges: Vec<RangeContent>,
    /// Per range, the longest zero run that data ended (its tail not included).
    interior_longest: Vec<u64>,
    /// Stream offset of the next byte.
    offset: u64,
    /// The last `needle_len - 1` bytes seen, for matches across `feed` calls.
    carry: Vec<u8>,
    banner_count: u64,
    /// Physical addresses of the first matches.
    banner_addresses: Vec<u64>,
    kernel_rodata: Option<RamRange>,
    banner_in_rodata: u64,
}

impl ContentScanner {
    /// A scanner for an image of `layout` (the System RAM ranges, in image order), searching
    /// for `banner` (see [`banner_needle`]), which must be inside `kernel_rodata` when given.
    pub fn new(layout: &[RamRange], banner: &str, kernel_rodata: Option<RamRange>) -> Self {
        let banner = if banner.is_empty() {
            GENERIC_BANNER
        } else {
            banner
        };
        let finder = Finder::new(banner.as_bytes()).into_owned();
        Self {
            needle_len: banner.len(),
            finder,
            layout: layout.to_vec(),
            range: 0,
            header_left: HEADER_SIZE,
            addr: layout.first().map_or(0, |r| r.start),
            page_zero: true,
            page_start: None,
            run: 0,
            ranges: Vec::with_capacity(layout.len()),
            interior_longest: Vec::with_capacity(layout.len()),
            offset: 0,
            carry: Vec::with_capacity(banner.len()),
            banner_count: 0,
            banner_addresses: Vec::new(),
            kernel_rodata,
            banner_in_rodata: 0,
        }
    }

    /// The next bytes of the image.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.search(bytes);
        let mut rest = bytes;
        while !rest.is_empty() && self.range < self.layout.len() {
            if self.header_left > 0 {
                let n = self.header_left.min(rest.len());
                self.header_left -= n;
                rest = rest.get(n..).unwrap_or_default();
                continue;
            }
            let Some(r) = self.layout.get(self.range).copied() else {
                break;
            };
            if self.ranges.len() == self.range {
                self.ranges.push(unread(r));
                self.interior_longest.push(0);
            }
            // Up to the next page boundary or the end of the range, whichever is first.
            let page_end = (self.addr / PAGE_SIZE + 1).saturating_mul(PAGE_SIZE);
            let stop = page_end.min(r.end_exclusive());
            let n = usize::try_from(stop - self.addr)
                .unwrap_or(usize::MAX)
                .min(rest.len());
            let (seg, tail) = rest.split_at(n);
            rest = tail;
            self.page_start.get_or_insert(self.addr);
            self.page_zero &= is_zero(seg);
            self.addr += n as u64;
            if self.addr == stop {
                self.close_page();
            }
            if self.addr == r.end_exclusive() {
                self.close_range();
            }
        }
        self.offset += bytes.len() as u64;
    }

    fn close_page(&mut self) {
        let Some(start) = self.page_start.take() else {
            return;
        };
        let len = self.addr.saturating_sub(start);
        let zero = std::mem::replace(&mut self.page_zero, true);
        let Some(rc) = self.ranges.get_mut(self.range) else {
            return;
        };
        rc.pages += 1;
        if zero {
            rc.zero_pages += 1;
            self.run += len;
            rc.longest_zero_run_bytes = rc.longest_zero_run_bytes.max(self.run);
        } else {
            if let Some(l) = self.interior_longest.get_mut(self.range) {
                *l = (*l).max(self.run);
            }
            self.run = 0;
        }
    }

    fn close_range(&mut self) {
        if let Some(rc) = self.ranges.get_mut(self.range) {
            rc.zero_tail_bytes = self.run;
        }
        self.run = 0;
        self.range += 1;
        self.header_left = HEADER_SIZE;
        if let Some(next) = self.layout.get(self.range) {
            self.addr = next.start;
        }
    }

    /// Counts banner matches in `bytes`, including those that began in earlier calls.
    fn search(&mut self, bytes: &[u8]) {
        let keep = self.needle_len.saturating_sub(1);
        if !self.carry.is_empty() {
            // Matches that start in the carried bytes and end in `bytes`.
            let mut joint = self.carry.clone();
            joint.extend_from_slice(bytes.get(..keep.min(bytes.len())).unwrap_or_default());
            let base = self.offset - self.carry.len() as u64;
            let carried = self.carry.len();
            let hits: Vec<u64> = self
                .finder
                .find_iter(&joint)
                .take_while(|&i| i < carried)
                .map(|i| base + i as u64)
                .collect();
            for h in hits {
                self.hit(h);
            }
        }
        let hits: Vec<u64> = self
            .finder
            .find_iter(bytes)
            .map(|i| self.offset + i as u64)
            .collect();
        for h in hits {
            self.hit(h);
        }
        // Keep the last `keep` bytes of everything seen so far.
        if bytes.len() >= keep {
            self.carry.clear();
            self.carry
                .extend_from_slice(bytes.get(bytes.len() - keep..).unwrap_or_default());
        } else {
            self.carry.extend_from_slice(bytes);
            let excess = self.carry.len().saturating_sub(keep);
            self.carry.drain(..excess);
        }
    }

    fn hit(&mut self, stream_offset: u64) {
        self.banner_count += 1;
        let Some(addr) = self.physical_address(stream_offset) else {
            return;
        };
        if self
            .kernel_rodata
            .is_some_and(|r| (r.start..=r.end).contains(&addr))
        {
            self.banner_in_rodata += 1;
        }
        if self.banner_addresses.len() < MAX_BANNER_ADDRESSES {
            self.banner_addresses.push(addr);
        }
    }

    /// Physical address of a stream offset (None inside a header or past the end).
    fn physical_address(&self, stream_offset: u64) -> Option<u64> {
        let mut at = 0u64;
        for r in &self.layout {
            let data = at + HEADER_SIZE as u64;
            if stream_offset < data {
                return None;
            }
            if stream_offset < data + r.size() {
                return Some(r.start + (stream_offset - data));
            }
            at = data + r.size();
        }
        None
    }

    /// The content facts. Ranges the stream never reached are listed with no pages.
    pub fn finish(mut self) -> MemoryContent {
        self.close_page();
        for r in self.layout.iter().skip(self.ranges.len()) {
            self.ranges.push(unread(*r));
            self.interior_longest.push(0);
        }
        flag_suspect_tails(&mut self.ranges, &self.interior_longest);
        let banner_searched = String::from_utf8_lossy(self.finder.needle()).into_owned();
        MemoryContent {
            banner_searched,
            banner_count: self.banner_count,
            banner_addresses: self.banner_addresses,
            kernel_rodata: self.kernel_rodata,
            banner_in_kernel_rodata: self.kernel_rodata.map(|_| self.banner_in_rodata),
            pages: self.ranges.iter().map(|r| r.pages).sum(),
            zero_pages: self.ranges.iter().map(|r| r.zero_pages).sum(),
            ranges: self.ranges,
        }
    }
}

/// Flags each range whose zero tail is at least [`MIN_SUSPECT_TAIL`] and
/// [`SUSPECT_TAIL_FACTOR`] times longer than the longest zero run elsewhere in RAM: in the
/// other ranges, or in this one before its tail (`interior`, per range).
fn flag_suspect_tails(ranges: &mut [RangeContent], interior: &[u64]) {
    let longest: Vec<u64> = ranges.iter().map(|r| r.longest_zero_run_bytes).collect();
    for (i, r) in ranges.iter_mut().enumerate() {
        let other = longest
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != i)
            .map(|(_, &l)| l)
            .chain(interior.get(i).copied())
            .max()
            .unwrap_or(0);
        r.zero_tail_suspect = r.zero_tail_bytes >= MIN_SUSPECT_TAIL
            && r.zero_tail_bytes > other.saturating_mul(SUSPECT_TAIL_FACTOR);
    }
}

/// Whether every byte is zero (no early exit inside 64-byte blocks, so it vectorizes).
fn is_zero(bytes: &[u8]) -> bool {
    bytes
        .chunks(64)
        .all(|c| c.iter().fold(0u8, |a, &b| a | b) == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::lime_format::LimeHeader;
    use proptest::prelude::*;

    const BANNER: &str = "Linux version 6.1.0-57-amd64 (debian-kernel@lists.debian.org) #1 SMP";

    /// The first MiB's RAM, then one range of `big_mib` MiB.
    fn layout_of(big_mib: u64) -> Vec<RamRange> {
        vec![
            RamRange {
                start: 0x1000,
                end: 0x9fbff,
            },
            RamRange {
                start: 0x10_0000,
                end: 0x10_0000 + (big_mib << 20) - 1,
            },
        ]
    }

    fn layout() -> Vec<RamRange> {
        layout_of(64)
    }

    /// A LiME image of `layout`: a data byte at offset 8 of every page below `data_until`
    /// (physical), zeros elsewhere, and the banner at `banner_at` (physical).
    fn image(layout: &[RamRange], data_until: u64, banner_at: Option<u64>) -> Vec<u8> {
        let mut out = Vec::new();
        for r in layout {
            out.extend_from_slice(
                &LimeHeader {
                    start: r.start,
                    end: r.end,
                }
                .encode(),
            );
            let base = out.len();
            out.resize(base + r.size() as usize, 0);
            let first_page = r.start.div_ceil(PAGE_SIZE) * PAGE_SIZE;
            for page in (first_page..=r.end).step_by(PAGE_SIZE as usize) {
                if page + 8 < data_until
                    && let Some(b) = out.get_mut(base + (page + 8 - r.start) as usize)
                {
                    *b = 0xa5;
                }
            }
            if let Some(b) = banner_at.filter(|b| (r.start..=r.end).contains(b)) {
                let at = base + (b - r.start) as usize;
                if let Some(dst) = out.get_mut(at..at + BANNER.len()) {
                    dst.copy_from_slice(BANNER.as_bytes());
                }
            }
        }
        out
    }

    fn scan(bytes: &[u8], chunk: usize) -> MemoryContent {
        scan_of(&layout(), bytes, chunk)
    }

    fn scan_of(l: &[RamRange], bytes: &[u8], chunk: usize) -> MemoryContent {
        let mut s = ContentScanner::new(l, BANNER, None);
        for c in bytes.chunks(chunk.max(1)) {
            s.feed(c);
        }
        s.finish()
    }

    #[test]
    fn a_whole_image_has_its_banner_and_no_suspect_tail() {
        let l = layout_of(4);
        let end = l.last().map_or(0, |r| r.end);
        let img = image(&l, end + 1, Some(0x20_0ffc));
        for chunk in [1usize << 20, 4096, 33, 7] {
            let c = scan_of(&l, &img, chunk);
            assert_eq!(c.banner_count, 1, "chunk {chunk}");
            assert_eq!(c.banner_addresses, vec![0x20_0ffc], "chunk {chunk}");
            assert_eq!(c.hollow_reason(), None);
            // 0x1000..0x9fc00: 158 full pages + one of 0xc00 bytes, all with data at +8
            // except the partial one (its byte 8 is data too).
            assert_eq!(
                c.ranges.first().map(|r| (r.pages, r.zero_pages)),
                Some((159, 0))
            );
            assert_eq!(c.ranges.get(1).map(|r| r.pages), Some(1024));
            assert!(c.ranges.iter().all(|r| !r.zero_tail_suspect));
        }
    }

    #[test]
    fn a_range_zero_filled_after_a_skip_is_hollow_and_flagged() {
        let l = layout();
        // Data for the first 1 MiB of the big range, then LiME's zero padding.
        let img = image(&l, 0x20_0000, None);
        let c = scan(&img, 1 << 20);
        assert_eq!(c.banner_count, 0);
        let big = c.ranges.get(1).cloned();
        assert_eq!(big.as_ref().map(|r| r.zero_tail_bytes), Some(63 << 20));
        assert_eq!(big.as_ref().map(|r| r.zero_pages), Some(63 * 256));
        assert!(big.is_some_and(|r| r.zero_tail_suspect));
        let why = c.hollow_reason().unwrap();
        assert!(why.contains("banner is not in the image"), "{why}");
        assert!(why.contains("ends in 63 MiB of zeros"), "{why}");
    }

    #[test]
    fn a_zero_tail_no_longer_than_other_runs_is_not_flagged() {
        // Data only at 0, 20 and 40 MiB: 20 MiB runs inside the range explain its 24 MiB tail.
        let l = layout();
        let mut img = image(&l, 0, Some(0x10_0100));
        let data_start = 2 * HEADER_SIZE + l.first().map_or(0, |r| r.size() as usize);
        for mib in [0, 20, 40] {
            if let Some(b) = img.get_mut(data_start + (mib << 20) + 8) {
                *b = 1;
            }
        }
        let c = scan(&img, 1 << 20);
        assert_eq!(c.banner_count, 1);
        assert_eq!(
            c.ranges.get(1).map(|r| r.zero_tail_bytes),
            Some((24 << 20) - 4096)
        );
        assert!(c.ranges.iter().all(|r| !r.zero_tail_suspect), "{c:?}");
    }

    /// With the kernel's rodata known, only a banner there counts: a copy in another page
    /// (the agent's heap) does not make a hollow image whole.
    #[test]
    fn only_the_banner_in_kernel_rodata_counts_when_it_is_known() {
        let l = layout();
        let rodata = RamRange {
            start: 0x20_0000,
            end: 0x2f_ffff,
        };
        let end = l.last().map_or(0, |r| r.end);
        for (at, hollow) in [(0x20_1234, false), (0x30_0000, true)] {
            let img = image(&l, end + 1, Some(at));
            let mut s = ContentScanner::new(&l, BANNER, Some(rodata));
            s.feed(&img);
            let c = s.finish();
            assert_eq!(c.banner_count, 1);
            assert_eq!(c.banner_in_kernel_rodata, Some(u64::from(!hollow)));
            let why = c.hollow_reason();
            assert_eq!(why.is_some(), hollow, "{why:?}");
            if let Some(w) = why {
                assert!(w.contains("kernel's own banner is not in the image"), "{w}");
                assert!(w.contains("0x200000-0x2fffff"), "{w}");
            }
        }
    }

    /// Pages are physical: a range that starts or ends inside a page has a partial page there,
    /// counted as one page and by its own length in zero runs.
    #[test]
    fn partial_pages_at_range_edges() {
        let l = vec![RamRange {
            start: 0x100,
            end: 0x2bff,
        }];
        let img = image(&l, 0, None);
        let mut s = ContentScanner::new(&l, BANNER, None);
        s.feed(&img);
        let c = s.finish();
        let r = c.ranges.first().cloned();
        assert_eq!(r.as_ref().map(|r| (r.pages, r.zero_pages)), Some((3, 3)));
        assert_eq!(r.map(|r| r.zero_tail_bytes), Some(0x2b00));
    }

    #[test]
    fn the_needle_comes_from_proc_version() {
        assert_eq!(banner_needle(&format!("{BANNER}\n")), BANNER);
        assert_eq!(banner_needle(""), GENERIC_BANNER);
        assert_eq!(banner_needle("garbage"), GENERIC_BANNER);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// However the stream is cut, the same facts come out; random bytes never panic.
        #[test]
        fn chunking_does_not_change_the_facts(
            cuts in proptest::collection::vec(1usize..70_000, 1..40),
            banner_page in 0u64..(4 << 8),
            offset in 0u64..4096,
        ) {
            let l = layout_of(4);
            let end = l.last().map_or(0, |r| r.end);
            let at = 0x10_0000 + banner_page * PAGE_SIZE + offset;
            let at = at.min(end + 1 - BANNER.len() as u64);
            let img = image(&l, end / 2, Some(at));
            let whole = scan_of(&l, &img, img.len());
            let mut s = ContentScanner::new(&l, BANNER, None);
            let mut rest = img.as_slice();
            for c in cuts.iter().cycle() {
                if rest.is_empty() { break; }
                let (a, b) = rest.split_at((*c).min(rest.len()));
                s.feed(a);
                rest = b;
            }
            prop_assert_eq!(s.finish(), whole.clone());
            prop_assert_eq!(whole.banner_addresses, vec![at]);
        }

        #[test]
        fn hostile_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..5000), chunk in 1usize..300) {
            let _ = scan(&bytes, chunk);
        }
    }
}
