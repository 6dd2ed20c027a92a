//! Choosing and opening a memory source (kcore first, LiME as the fallback), and the RAM map
//! both read from.

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;

use airf_evidence::memory::{MemorySource, SourceAttempt};

use super::iomem::{self, RamRange};
use super::kcore::{self, KcoreError, KcoreProducer};
use super::lime::{
    self, LimeError, LimeModuleFacts, LimeProducer, LimeSession, LimeStreamProducer, LimeTimeouts,
};
use super::{content, lockdown};
use crate::pipeline::EvidenceProducer;
use crate::source::resilient::BadRanges;

/// Where /proc/kcore is.
pub const KCORE: &str = "/proc/kcore";
/// Where the RAM map is.
pub const IOMEM: &str = "/proc/iomem";

/// Which sources to try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceChoice {
    /// kcore, then LiME.
    Auto,
    /// Only this one.
    Only(MemorySource),
}

impl SourceChoice {
    fn order(self) -> Vec<MemorySource> {
        match self {
            Self::Auto => vec![MemorySource::Kcore, MemorySource::Lime],
            Self::Only(s) => vec![s],
        }
    }
}

/// Options for the LiME source.
#[derive(Debug, Clone, Default)]
pub struct LimeOptions {
    /// `--lime-module`.
    pub module: Option<PathBuf>,
    /// `--lime-sha256`.
    pub sha256: Option<String>,
    /// Timeouts.
    pub timeouts: LimeTimeouts,
}

/// No source worked.
#[derive(Debug, thiserror::Error)]
#[error("no memory source could be used: {}", summary(self))]
pub struct NoSource {
    /// Each source tried, with its own cause.
    pub attempts: Vec<SourceAttempt>,
    /// What the kernel's lockdown mode rules out, when it is on (the root cause behind
    /// "operation not permitted").
    pub lockdown: Option<&'static str>,
}

fn summary(e: &NoSource) -> String {
    e.attempts
        .iter()
        .map(|a| format!("{}: {}", a.source, a.cause))
        .chain(e.lockdown.map(str::to_owned))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A source ready to stream.
pub struct OpenedSource {
    /// The producer.
    pub producer: Box<dyn EvidenceProducer>,
    /// Which source it is.
    pub source: MemorySource,
    /// Sources tried before it.
    pub skipped: Vec<SourceAttempt>,
    /// LiME module facts (LiME only).
    pub lime_module: Option<LimeModuleFacts>,
    /// PT_LOAD segments with a physical address (kcore only).
    pub kcore_segments: Option<usize>,
    /// Partial pages zero-filled by design (kcore only).
    pub partial_pages: BadRanges,
}

impl std::fmt::Debug for OpenedSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedSource")
            .field("source", &self.source)
            .field("skipped", &self.skipped)
            .finish_non_exhaustive()
    }
}

/// A memory source's stream, its content scanned as it passes (see [`content`]): the
/// producer every memory acquisition streams through, whichever the source.
pub struct ScannedProducer {
    inner: Box<dyn EvidenceProducer>,
    scanner: Option<content::ContentScanner>,
}

impl std::fmt::Debug for ScannedProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScannedProducer")
            .field("scanner", &self.scanner)
            .finish_non_exhaustive()
    }
}

impl ScannedProducer {
    /// Scans `inner`, an image of `ram` in LiME layout, for `banner` (see
    /// [`content::banner_needle`]).
    pub fn new(inner: Box<dyn EvidenceProducer>, map: &RamMap, banner: &str) -> Self {
        Self {
            inner,
            scanner: Some(content::ContentScanner::new(
                &map.ram,
                banner,
                map.kernel_rodata,
            )),
        }
    }
}

impl crate::pipeline::Producer for ScannedProducer {
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize, crate::pipeline::ProduceError> {
        let n = self.inner.fill(buf)?;
        if let (Some(s), Some(filled)) = (self.scanner.as_mut(), buf.get(..n)) {
            s.feed(filled);
        }
        Ok(n)
    }
}

impl EvidenceProducer for ScannedProducer {
    fn unreadable(&self) -> BadRanges {
        self.inner.unreadable()
    }

    fn take_content(&mut self) -> Option<content::MemoryContent> {
        self.scanner.take().map(content::ContentScanner::finish)
    }
}

/// What `/proc/iomem` says about RAM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RamMap {
    /// The System RAM ranges: the image's layout.
    pub ram: Vec<RamRange>,
    /// Where the kernel's read-only data is (it holds the kernel's own banner), when listed.
    pub kernel_rodata: Option<RamRange>,
}

/// Reads and parses /proc/iomem.
pub fn read_ram_map() -> Result<RamMap, String> {
    let text = std::fs::read_to_string(IOMEM).map_err(|e| format!("reading {IOMEM}: {e}"))?;
    Ok(RamMap {
        ram: iomem::parse_system_ram(&text).map_err(|e| e.to_string())?,
        kernel_rodata: iomem::kernel_section(&text, "Kernel rodata"),
    })
}

/// Opens kcore and plans the capture of `ram`; fails when nothing is readable.
pub fn open_kcore(ram: &[RamRange]) -> Result<(KcoreProducer<File>, usize, BadRanges), KcoreError> {
    let f = File::open(KCORE).map_err(|e| KcoreError::io("opening", e))?;
    let mut head = vec![0u8; kcore::HEAD_BYTES];
    let n = crate::source::ReadAt::read_at(&f, &mut head, 0)
        .map_err(|e| KcoreError::io("reading", e))?;
    head.truncate(n);
    let layout = kcore::parse_header(&head)?;
    let plan = kcore::map_ranges(ram, &layout.segments);
    kcore::probe(&f, &plan)?;
    let partial = kcore::partial_pages(&plan);
    Ok((KcoreProducer::new(f, plan), layout.segments.len(), partial))
}

/// Checks the LiME module, loads it and connects to its stream.
pub fn open_lime(
    ram: &[RamRange],
    opts: &LimeOptions,
    running_release: &str,
) -> Result<(LimeProducer, LimeModuleFacts), LimeError> {
    let path = opts.module.clone().ok_or(LimeError::NoModule)?;
    let sha = opts.sha256.clone().ok_or(LimeError::NoHash)?;
    let read_err = |error| LimeError::Read {
        path: path.clone(),
        error,
    };
    let mut file = File::open(&path).map_err(read_err)?;
    let mut ko = Vec::new();
    file.read_to_end(&mut ko).map_err(read_err)?;
    // Load exactly the bytes that were checked: the same open file, from the start.
    let facts = lime::check_module(&path, &ko, &sha, running_release)?;
    let (session, stream): (LimeSession, _) = LimeSession::start(file, &facts, opts.timeouts)?;
    let facts = LimeModuleFacts {
        parameters: Some(session.parameters.clone()),
        ..facts
    };
    Ok((
        LimeProducer {
            stream: LimeStreamProducer::new(stream, ram.to_vec()),
            session,
        },
        facts,
    ))
}

/// Tries the sources in order; the first that opens wins.
pub fn open_source(
    choice: SourceChoice,
    ram: &[RamRange],
    lime: &LimeOptions,
    running_release: &str,
) -> Result<OpenedSource, NoSource> {
    let mut skipped = Vec::new();
    for source in choice.order() {
        let opened = match source {
            MemorySource::Kcore => open_kcore(ram)
                .map(|(p, segs, partial_pages)| OpenedSource {
                    producer: Box::new(p),
                    source,
                    skipped: Vec::new(),
                    lime_module: None,
                    kcore_segments: Some(segs),
                    partial_pages,
                })
                .map_err(|e| e.to_string()),
            MemorySource::Lime => open_lime(ram, lime, running_release)
                .map(|(p, facts)| OpenedSource {
                    producer: Box::new(p),
                    source,
                    skipped: Vec::new(),
                    lime_module: Some(facts),
                    kcore_segments: None,
                    partial_pages: BadRanges::default(),
                })
                .map_err(|e| e.to_string()),
            MemorySource::Unknown => Err("not a source this agent has".to_owned()),
        };
        match opened {
            Ok(mut o) => {
                o.skipped = skipped;
                return Ok(o);
            }
            Err(cause) => {
                tracing::info!("{source}: {cause}");
                skipped.push(SourceAttempt { source, cause });
            }
        }
    }
    // Under lockdown the per-source causes are symptoms ("operation not permitted"); say the
    // root cause once, where the responder reads it.
    Err(NoSource {
        attempts: skipped,
        lockdown: lockdown::current()
            .as_deref()
            .and_then(lockdown::consequence),
    })
}
