//! `/proc/kcore`: the kernel's ELF core view of memory, read without any kernel change.
//!
//! Its PT_LOAD program headers map kernel virtual ranges to file offsets; the ones of the direct
//! map (and kernel text) also carry the physical address in `p_paddr` (vmalloc, modules and
//! vmemmap have `p_paddr == u64::MAX` and are skipped). [`map_ranges`] lays those segments over
//! the "System RAM" ranges of `/proc/iomem`, which copes with KASLR moving the direct map because
//! only physical addresses are compared. kcore is sparse and claims terabytes: it is only ever
//! read at the mapped offsets, never linearly.
//!
//! Known kernel rules: opening needs CAP_SYS_RAWIO; lockdown in *confidentiality* mode refuses
//! it (it stays allowed under *integrity*, where unsigned modules such as LiME are refused).

use std::io;

use goblin::container::{Container, Ctx};
use goblin::elf::Elf;
use goblin::elf::header::ET_CORE;
use goblin::elf::program_header::{PT_LOAD, PT_NOTE, ProgramHeader};

use super::iomem::RamRange;
use super::lime_format::{HEADER_SIZE, LimeHeader};
use crate::pipeline::{ProduceError, Producer};
use crate::source::ReadAt;
use crate::source::resilient::BadRanges;

/// Page size used to retry failed reads and to record unreadable spans.
pub const PAGE: usize = 4096;

/// Size of the largest single read (one pipeline chunk is read with as few preads as possible).
const MAX_READ: usize = 2 << 20;

/// How many bytes of the start of kcore are enough for the ELF and program headers.
pub const HEAD_BYTES: usize = 64 * 1024;

/// The cause recorded for RAM that no kcore segment maps.
pub const UNMAPPED_CAUSE: &str = "not mapped by any /proc/kcore PT_LOAD segment";

/// One PT_LOAD segment with a physical address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadSegment {
    /// Kernel virtual address.
    pub vaddr: u64,
    /// Physical address.
    pub paddr: u64,
    /// Offset in /proc/kcore.
    pub file_offset: u64,
    /// Bytes.
    pub size: u64,
}

/// What the kcore headers say.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KcoreLayout {
    /// PT_LOAD segments with a physical address, in header order.
    pub segments: Vec<LoadSegment>,
    /// PT_LOAD segments skipped because `p_paddr` is -1 (vmalloc, modules, vmemmap): counted
    /// for tests, which check the parser against real headers.
    #[cfg(any(test, feature = "test-util"))]
    pub skipped_without_paddr: usize,
    /// (file offset, size) of the PT_NOTE segment.
    pub notes: Option<(u64, u64)>,
}

/// Why kcore's headers are unusable.
#[derive(Debug, thiserror::Error)]
pub enum KcoreError {
    /// Not an ELF file, or truncated headers.
    #[error("/proc/kcore headers are malformed: {0}")]
    Malformed(String),
    /// Not a 64-bit little-endian core file.
    #[error("/proc/kcore is not a 64-bit little-endian ELF core file ({0})")]
    Unsupported(String),
    /// Opening or reading failed.
    #[error("{what} /proc/kcore: {error}{hint}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The OS error.
        #[source]
        error: io::Error,
        /// A hint for the common causes.
        hint: &'static str,
    },
    /// No RAM could be read at all.
    #[error("/proc/kcore: no System RAM range is readable ({0})")]
    NothingReadable(String),
}

impl KcoreError {
    /// An I/O error with a hint for permission errors.
    pub fn io(what: &'static str, error: io::Error) -> Self {
        let hint = match error.raw_os_error() {
            Some(nix::libc::EPERM) => {
                " (kernel lockdown in confidentiality mode, or missing CAP_SYS_RAWIO)"
            }
            Some(nix::libc::EACCES) => " (run the agent as root: kcore needs CAP_SYS_RAWIO)",
            Some(nix::libc::ENOENT) => " (the kernel was built without CONFIG_PROC_KCORE)",
            _ => "",
        };
        Self::Io { what, error, hint }
    }
}

/// Parses the ELF and program headers at the start of /proc/kcore (untrusted bytes).
pub fn parse_header(head: &[u8]) -> Result<KcoreLayout, KcoreError> {
    let header = Elf::parse_header(head).map_err(|e| KcoreError::Malformed(e.to_string()))?;
    let container = header
        .container()
        .map_err(|e| KcoreError::Malformed(e.to_string()))?;
    let endian = header
        .endianness()
        .map_err(|e| KcoreError::Malformed(e.to_string()))?;
    if container != Container::Big || !endian.is_little() {
        return Err(KcoreError::Unsupported(format!(
            "class {container:?}, {endian:?} endian"
        )));
    }
    if header.e_type != ET_CORE {
        return Err(KcoreError::Unsupported(format!(
            "e_type {} is not ET_CORE",
            header.e_type
        )));
    }
    let phoff = usize::try_from(header.e_phoff)
        .map_err(|_| KcoreError::Malformed("e_phoff out of range".into()))?;
    let count = usize::from(header.e_phnum);
    let end = count
        .checked_mul(usize::from(header.e_phentsize))
        .and_then(|n| n.checked_add(phoff))
        .ok_or_else(|| KcoreError::Malformed("program header table overflows".into()))?;
    if end > head.len() {
        return Err(KcoreError::Malformed(format!(
            "program header table ends at byte {end}, past the {} bytes read",
            head.len()
        )));
    }
    let phdrs = ProgramHeader::parse(head, phoff, count, Ctx::new(container, endian))
        .map_err(|e| KcoreError::Malformed(e.to_string()))?;
    let mut layout = KcoreLayout::default();
    for p in phdrs {
        match p.p_type {
            PT_NOTE if layout.notes.is_none() => layout.notes = Some((p.p_offset, p.p_filesz)),
            PT_LOAD if p.p_paddr == u64::MAX => {
                #[cfg(any(test, feature = "test-util"))]
                {
                    layout.skipped_without_paddr += 1;
                }
            }
            PT_LOAD if p.p_filesz > 0 => layout.segments.push(LoadSegment {
                vaddr: p.p_vaddr,
                paddr: p.p_paddr,
                file_offset: p.p_offset,
                size: p.p_filesz,
            }),
            _ => {}
        }
    }
    Ok(layout)
}

/// Where the bytes of one piece of a RAM range come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceSource {
    /// Read from /proc/kcore at this offset.
    Kcore {
        /// File offset of the piece's first byte.
        file_offset: u64,
    },
    /// No segment maps it: zero-filled and recorded.
    Unmapped,
}

/// A contiguous part of a RAM range with one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    /// Physical address of the first byte.
    pub phys: u64,
    /// Bytes.
    pub len: u64,
    /// Where they come from.
    pub source: PieceSource,
}

/// One RAM range and how to read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangePlan {
    /// The range.
    pub range: RamRange,
    /// Its pieces, in address order, covering it exactly.
    pub pieces: Vec<Piece>,
}

/// Lays the segments over the RAM ranges. Where several segments map an address (kernel text
/// and the direct map), the one reaching furthest wins, so each range is read in as few pieces
/// as possible; what no segment maps becomes an [`PieceSource::Unmapped`] piece.
pub fn map_ranges(ram: &[RamRange], segments: &[LoadSegment]) -> Vec<RangePlan> {
    ram.iter()
        .map(|&range| {
            let end = range.end_exclusive();
            let mut pieces = Vec::new();
            let mut cur = range.start;
            while cur < end {
                let best = segments
                    .iter()
                    .filter(|s| s.paddr <= cur && cur < s.paddr.saturating_add(s.size))
                    .filter_map(|s| {
                        let off = s.file_offset.checked_add(cur - s.paddr)?;
                        Some((s.paddr.saturating_add(s.size).min(end), off))
                    })
                    .max_by_key(|&(reach, _)| reach);
                let (next, source) = match best {
                    Some((reach, file_offset)) => (reach, PieceSource::Kcore { file_offset }),
                    None => {
                        let next = segments
                            .iter()
                            .map(|s| s.paddr)
                            .filter(|&p| p > cur)
                            .min()
                            .unwrap_or(end)
                            .min(end);
                        (next, PieceSource::Unmapped)
                    }
                };
                if next <= cur {
                    break;
                }
                pieces.push(Piece {
                    phys: cur,
                    len: next - cur,
                    source,
                });
                cur = next;
            }
            // A range ending at u64::MAX cannot be represented exclusively; its last byte is
            // left to the unmapped tail so the pieces still cover the range exactly.
            if range.end == u64::MAX && cur == u64::MAX {
                pieces.push(Piece {
                    phys: cur,
                    len: 1,
                    source: PieceSource::Unmapped,
                });
            }
            RangePlan { range, pieces }
        })
        .collect()
}

/// The cause recorded for the partial pages kcore never maps.
pub const PARTIAL_PAGE_CAUSE: &str = "part of a page that is only partly System RAM; /proc/kcore maps whole RAM pages only (zero-filled)";

/// True when an unmapped piece holds no whole page: the partly-RAM page at the edge of a range
/// such as `00001000-0009fbff` (kcore maps RAM by whole pages, so it never has these bytes).
/// Such pieces are zero-filled and listed in the memory facts, not counted as read errors.
pub fn is_partial_page(piece: &Piece) -> bool {
    let page = PAGE as u64;
    let first_whole = piece.phys.div_ceil(page).saturating_mul(page);
    let end = piece.phys.saturating_add(piece.len);
    matches!(piece.source, PieceSource::Unmapped) && first_whole.saturating_add(page) > end
}

/// The partial pages of a plan (see [`is_partial_page`]), as physical spans with their cause.
pub fn partial_pages(plan: &[RangePlan]) -> BadRanges {
    let mut out = BadRanges::default();
    for p in plan
        .iter()
        .flat_map(|p| &p.pieces)
        .filter(|p| is_partial_page(p))
    {
        out.record(p.phys, p.len, None, PARTIAL_PAGE_CAUSE);
    }
    out
}

/// Finds the descriptor of the first ELF note called `name` in a PT_NOTE segment's bytes.
pub fn find_note<'a>(notes: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let align4 = |n: usize| n.checked_add(3).map(|v| v & !3);
    let word = |at: usize| -> Option<usize> {
        let b: [u8; 4] = notes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(b)).ok()
    };
    let mut at = 0usize;
    while at.checked_add(12)? <= notes.len() {
        let namesz = word(at)?;
        let descsz = word(at + 4)?;
        let name_at = at + 12;
        let desc_at = name_at.checked_add(align4(namesz)?)?;
        let next = desc_at.checked_add(align4(descsz)?)?;
        let raw_name = notes.get(name_at..name_at.checked_add(namesz)?)?;
        let this = raw_name.strip_suffix(&[0]).unwrap_or(raw_name);
        if this == name.as_bytes() {
            return notes.get(desc_at..desc_at.checked_add(descsz)?);
        }
        if namesz == 0 && descsz == 0 {
            return None;
        }
        at = next;
    }
    None
}

/// Streams RAM ranges from kcore in LiME format: a header per range, then its bytes. Pages that
/// fail to read are zero-filled and recorded (by physical address); so is unmapped RAM.
#[derive(Debug)]
pub struct KcoreProducer<R> {
    kcore: R,
    plan: Vec<RangePlan>,
    range: usize,
    piece: usize,
    /// Bytes of the current header already sent (HEADER_SIZE = header done).
    header_sent: usize,
    /// Bytes of the current piece already sent.
    piece_sent: u64,
    bad: BadRanges,
    readable: u64,
}

impl<R: ReadAt> KcoreProducer<R> {
    /// A producer for `plan` over the open kcore file.
    pub fn new(kcore: R, plan: Vec<RangePlan>) -> Self {
        Self {
            kcore,
            plan,
            range: 0,
            piece: 0,
            header_sent: 0,
            piece_sent: 0,
            bad: BadRanges::default(),
            readable: 0,
        }
    }

    /// Bytes read from kcore so far (not zero-filled).
    pub fn readable_bytes(&self) -> u64 {
        self.readable
    }

    /// Reads `dst` (physical `phys`, kcore offset `off`), falling back to page reads; failed
    /// pages are zero-filled and recorded.
    fn read_mapped(&mut self, dst: &mut [u8], phys: u64, off: u64) {
        if read_full(&self.kcore, dst, off).is_ok() {
            self.readable += dst.len() as u64;
            return;
        }
        // Retry page by page, on physical page boundaries (kcore fails a page at a time).
        let mut delta = 0u64;
        let first = PAGE - (phys % PAGE as u64) as usize;
        let mut rest = dst;
        while !rest.is_empty() {
            let step = if delta == 0 { first } else { PAGE }.min(rest.len());
            let (page, tail) = std::mem::take(&mut rest).split_at_mut(step);
            rest = tail;
            let at = delta;
            delta += step as u64;
            let delta = at;
            match read_full(&self.kcore, page, off + delta) {
                Ok(()) => self.readable += page.len() as u64,
                Err(e) => {
                    page.fill(0);
                    self.bad.record(
                        phys + delta,
                        page.len() as u64,
                        e.raw_os_error(),
                        &format!("reading /proc/kcore failed: {e}"),
                    );
                }
            }
        }
    }
}

fn read_full<R: ReadAt>(r: &R, buf: &mut [u8], offset: u64) -> io::Result<()> {
    let mut done = 0usize;
    while let Some(dst) = buf.get_mut(done..).filter(|d| !d.is_empty()) {
        let at = offset + done as u64;
        let want = dst.len().min(MAX_READ);
        let Some(dst) = dst.get_mut(..want) else {
            break;
        };
        match r.read_at(dst, at) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl<R: ReadAt> Producer for KcoreProducer<R> {
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize, ProduceError> {
        let mut filled = 0usize;
        while filled < buf.len() {
            let Some(plan) = self.plan.get(self.range) else {
                break;
            };
            let range = plan.range;
            if self.header_sent < HEADER_SIZE {
                let header = LimeHeader {
                    start: range.start,
                    end: range.end,
                }
                .encode();
                let src = header.get(self.header_sent..).unwrap_or_default();
                let n = src.len().min(buf.len() - filled);
                if let (Some(dst), Some(src)) = (buf.get_mut(filled..filled + n), src.get(..n)) {
                    dst.copy_from_slice(src);
                }
                self.header_sent += n;
                filled += n;
                continue;
            }
            let Some(&piece) = plan.pieces.get(self.piece) else {
                self.range += 1;
                self.piece = 0;
                self.header_sent = 0;
                self.piece_sent = 0;
                continue;
            };
            let left = piece.len - self.piece_sent;
            let n = usize::try_from(left)
                .unwrap_or(usize::MAX)
                .min(buf.len() - filled);
            let phys = piece.phys + self.piece_sent;
            let Some(dst) = buf.get_mut(filled..filled + n) else {
                break;
            };
            match piece.source {
                PieceSource::Kcore { file_offset } => {
                    self.read_mapped(dst, phys, file_offset + self.piece_sent);
                }
                PieceSource::Unmapped => {
                    dst.fill(0);
                    if !is_partial_page(&piece) {
                        self.bad.record(phys, n as u64, None, UNMAPPED_CAUSE);
                    }
                }
            }
            filled += n;
            self.piece_sent += n as u64;
            if self.piece_sent >= piece.len {
                self.piece += 1;
                self.piece_sent = 0;
            }
        }
        Ok(filled)
    }
}

impl<R: ReadAt> crate::pipeline::EvidenceProducer for KcoreProducer<R> {
    fn unreadable(&self) -> BadRanges {
        self.bad.clone()
    }
}

/// Checks that at least one page of RAM reads through kcore; returns how many mapped bytes the
/// plan has. Called before the capture so "nothing readable" fails fast (and `auto` can fall
/// back to LiME).
pub fn probe<R: ReadAt>(kcore: &R, plan: &[RangePlan]) -> Result<u64, KcoreError> {
    let mapped: Vec<Piece> = plan
        .iter()
        .flat_map(|p| p.pieces.iter().copied())
        .filter(|p| matches!(p.source, PieceSource::Kcore { .. }))
        .collect();
    if mapped.is_empty() {
        return Err(KcoreError::NothingReadable(format!(
            "no PT_LOAD segment with a physical address covers any of {} RAM range(s)",
            plan.len()
        )));
    }
    let mut page = vec![0u8; PAGE];
    let mut last_error = None;
    for p in &mapped {
        let PieceSource::Kcore { file_offset } = p.source else {
            continue;
        };
        let len = usize::try_from(p.len).unwrap_or(PAGE).min(PAGE);
        let Some(dst) = page.get_mut(..len) else {
            continue;
        };
        match read_full(kcore, dst, file_offset) {
            Ok(()) => return Ok(mapped.iter().map(|p| p.len).sum()),
            Err(e) => last_error = Some(e),
        }
    }
    Err(KcoreError::NothingReadable(match last_error {
        Some(e) => format!("the first page of every mapped piece failed to read: {e}"),
        None => "nothing mapped".into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HEAD: &[u8] = include_bytes!("fixtures/kcore-6.1-qemu-512m-head.bin");
    const HEAD_KASLR: &[u8] = include_bytes!("fixtures/kcore-6.1-qemu-512m-kaslr-head.bin");
    const IOMEM: &str = include_str!("fixtures/iomem-6.1-qemu-512m.txt");

    fn seg(paddr: u64, size: u64, file_offset: u64) -> LoadSegment {
        LoadSegment {
            vaddr: 0xffff_8880_0000_0000 + paddr,
            paddr,
            file_offset,
            size,
        }
    }

    fn ram() -> Vec<RamRange> {
        super::super::iomem::parse_system_ram(IOMEM).unwrap()
    }

    #[test]
    fn real_kcore_headers() -> Result<(), KcoreError> {
        for (head, direct_map) in [
            (HEAD, 0xff11_0000_0000_0000u64),
            (HEAD_KASLR, 0xff3b_f7ae_8000_0000),
        ] {
            let layout = parse_header(head)?;
            // kernel text, and two direct-map segments; vmalloc, modules and vmemmap skipped.
            assert_eq!(layout.segments.len(), 3);
            assert_eq!(layout.skipped_without_paddr, 4);
            assert!(layout.notes.is_some());
            let plan = map_ranges(&ram(), &layout.segments);
            assert_eq!(plan.len(), 2);
            // 0x9f000-0x9fbff is RAM in iomem but not a whole page: kcore does not map it.
            let partial = partial_pages(&plan);
            assert_eq!(partial.ranges.len(), 1);
            assert_eq!(
                partial.ranges.first().map(|r| (r.offset, r.length)),
                Some((0x9f000, 0xc00))
            );
            for p in &plan {
                assert_eq!(
                    p.pieces.iter().filter(|p| !is_partial_page(p)).count(),
                    1,
                    "{p:?}"
                );
                let piece = p.pieces.first().copied();
                let Some(Piece {
                    source: PieceSource::Kcore { file_offset },
                    phys,
                    len,
                }) = piece
                else {
                    return Err(KcoreError::Malformed(format!("{p:?}")));
                };
                let partial_len: u64 = p
                    .pieces
                    .iter()
                    .filter(|p| is_partial_page(p))
                    .map(|p| p.len)
                    .sum();
                assert_eq!((phys, len + partial_len), (p.range.start, p.range.size()));
                // Read through the direct map (wherever KASLR put it), not through kernel text.
                let s = layout
                    .segments
                    .iter()
                    .find(|s| s.vaddr >= direct_map && s.paddr <= phys && phys < s.paddr + s.size);
                assert_eq!(
                    s.map(|s| s.file_offset + (phys - s.paddr)),
                    Some(file_offset)
                );
            }
        }
        Ok(())
    }

    #[test]
    fn vmcoreinfo_note() -> Result<(), KcoreError> {
        let (off, size) = parse_header(HEAD_KASLR)?.notes.unwrap();
        let notes = &HEAD_KASLR[off as usize..(off + size) as usize];
        let info = String::from_utf8_lossy(find_note(notes, "VMCOREINFO").unwrap());
        assert!(info.starts_with("OSRELEASE=6.1.0-57-amd64\n"), "{info}");
        assert!(info.contains("KERNELOFFSET=1d400000\n"));
        assert_eq!(find_note(notes, "NOPE"), None);
        Ok(())
    }

    #[test]
    fn malformed_headers_are_refused() {
        assert!(matches!(
            parse_header(b"not elf"),
            Err(KcoreError::Malformed(_))
        ));
        // Truncated inside the program header table.
        assert!(matches!(
            parse_header(&HEAD[..200]),
            Err(KcoreError::Malformed(_))
        ));
        // An ELF that is not a core file.
        let mut exec = HEAD.to_vec();
        if let Some(b) = exec.get_mut(16) {
            *b = 2; // ET_EXEC
        }
        assert!(matches!(
            parse_header(&exec),
            Err(KcoreError::Unsupported(_))
        ));
    }

    #[test]
    fn unmapped_ram_is_its_own_piece() {
        let ram = [RamRange {
            start: 0x1000,
            end: 0x8fff,
        }];
        let segs = [seg(0x3000, 0x2000, 0x10_000), seg(0x4000, 0x1000, 0x99_000)];
        let plan = map_ranges(&ram, &segs);
        let pieces = plan[0].pieces.clone();
        assert_eq!(
            pieces,
            vec![
                Piece {
                    phys: 0x1000,
                    len: 0x2000,
                    source: PieceSource::Unmapped
                },
                Piece {
                    phys: 0x3000,
                    len: 0x2000,
                    source: PieceSource::Kcore {
                        file_offset: 0x10_000
                    }
                },
                Piece {
                    phys: 0x5000,
                    len: 0x4000,
                    source: PieceSource::Unmapped
                },
            ]
        );
    }

    /// A fake kcore: byte at offset o is (o / 4096) as u8, and reads of `bad_page` fail.
    struct FakeKcore {
        bad_page: Option<u64>,
    }

    impl ReadAt for FakeKcore {
        fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
            for (i, b) in buf.iter_mut().enumerate() {
                let o = offset + i as u64;
                if Some(o / PAGE as u64) == self.bad_page {
                    return Err(io::Error::from_raw_os_error(nix::libc::EFAULT));
                }
                *b = (o / PAGE as u64) as u8;
            }
            Ok(buf.len())
        }
    }

    fn drain(p: &mut dyn Producer, chunk: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; chunk];
        loop {
            match p.fill(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
        out
    }

    #[test]
    fn produces_lime_and_records_bad_pages() {
        let ram = [
            RamRange {
                start: 0x1000,
                end: 0x2fff,
            },
            RamRange {
                start: 0x10_0000,
                end: 0x10_3fff,
            },
        ];
        let segs = [seg(0x1000, 0x2000, 0x1000), seg(0x10_0000, 0x3000, 0x5000)];
        let plan = map_ranges(&ram, &segs);
        let kcore = FakeKcore { bad_page: Some(6) };
        assert!(probe(&kcore, &plan).is_ok());
        let mut p = KcoreProducer::new(kcore, plan);
        let out = drain(&mut p, 5000);
        assert_eq!(out.len() as u64, super::super::iomem::lime_image_size(&ram));
        let h1 = LimeHeader::read(&out);
        assert_eq!(
            h1,
            Ok(LimeHeader {
                start: 0x1000,
                end: 0x2fff
            })
        );
        // page 1 of kcore → phys 0x1000
        assert_eq!(out.get(32), Some(&1));
        let second = 32 + 0x2000;
        let h2 = LimeHeader::read(&out[second..]);
        assert_eq!(
            h2,
            Ok(LimeHeader {
                start: 0x10_0000,
                end: 0x10_3fff
            })
        );
        // phys 0x101000 is kcore page 6: zero-filled; 0x103000 is unmapped.
        let data = &out[second + 32..];
        assert_eq!(data.first(), Some(&5));
        assert!(
            data.get(0x1000..0x2000)
                .is_some_and(|d| d.iter().all(|&b| b == 0))
        );
        assert_eq!(data.get(0x2000), Some(&7));
        let bad = p.unreadable_for_test();
        assert_eq!(bad.ranges.len(), 2);
        assert_eq!(
            bad.ranges.first().map(|r| (r.offset, r.length, r.errno)),
            Some((0x10_1000, 0x1000, Some(nix::libc::EFAULT)))
        );
        assert_eq!(
            bad.ranges
                .get(1)
                .map(|r| (r.offset, r.length, r.cause.as_str())),
            Some((0x10_3000, 0x1000, UNMAPPED_CAUSE))
        );
        assert_eq!(p.readable_bytes(), 0x4000);
    }

    #[test]
    fn nothing_readable_is_fatal() {
        let ram = [RamRange {
            start: 0x1000,
            end: 0x1fff,
        }];
        let plan = map_ranges(&ram, &[]);
        assert!(matches!(
            probe(&FakeKcore { bad_page: None }, &plan),
            Err(KcoreError::NothingReadable(_))
        ));
        let plan = map_ranges(&ram, &[seg(0x1000, 0x1000, 0x3000)]);
        assert!(matches!(
            probe(&FakeKcore { bad_page: Some(3) }, &plan),
            Err(KcoreError::NothingReadable(_))
        ));
    }

    impl<R: ReadAt> KcoreProducer<R> {
        fn unreadable_for_test(&self) -> BadRanges {
            self.bad.clone()
        }
    }

    proptest! {
        #[test]
        fn parse_header_never_panics(pos in 0usize..1024, byte in any::<u8>(), cut in 0usize..12288) {
            let mut head = HEAD.to_vec();
            if let Some(b) = head.get_mut(pos) { *b = byte; }
            head.truncate(cut);
            let _ = parse_header(&head);
        }

        #[test]
        fn find_note_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = find_note(&bytes, "VMCOREINFO");
        }

        /// The pieces cover every range exactly, in order, and mapped pieces lie inside a segment.
        #[test]
        fn plan_covers_ranges(
            ram_bounds in proptest::collection::btree_set(0u64..1 << 40, 2..12),
            segs in proptest::collection::vec((0u64..1 << 40, 1u64..1 << 36, 0u64..1 << 50), 0..6),
        ) {
            let b: Vec<u64> = ram_bounds.into_iter().collect();
            let ram: Vec<RamRange> = b.chunks_exact(2).filter_map(|p| Some(RamRange { start: *p.first()?, end: *p.get(1)? })).collect();
            let segs: Vec<LoadSegment> = segs.into_iter().map(|(p, s, o)| seg(p, s, o)).collect();
            let plan = map_ranges(&ram, &segs);
            prop_assert_eq!(plan.len(), ram.len());
            for p in &plan {
                let mut at = p.range.start;
                for piece in &p.pieces {
                    prop_assert_eq!(piece.phys, at);
                    prop_assert!(piece.len > 0);
                    if let PieceSource::Kcore { file_offset } = piece.source {
                        prop_assert!(segs.iter().any(|s| s.paddr <= piece.phys
                            && piece.phys + piece.len <= s.paddr + s.size
                            && file_offset == s.file_offset + (piece.phys - s.paddr)));
                    }
                    at += piece.len;
                }
                prop_assert_eq!(at, p.range.end_exclusive());
            }
        }
    }
}
