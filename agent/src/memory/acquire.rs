//! One memory acquisition, from the RAM map to the stored image and manifest: the memory
//! counterpart of [`crate::acquire::acquire_disk`].
//!
//! It runs in two steps so that nothing is stored when no source can be used: [`prepare`] reads
//! the RAM map and opens a source (a refused LiME module stores nothing), then
//! [`acquire_memory`] collects the artifacts and streams the image.

use std::sync::Arc;

use super::source::{
    LimeOptions, NoSource, OpenedSource, RamMap, ScannedProducer, SourceChoice, open_source,
    read_ram_map,
};
use super::{artifacts, content, iomem, lockdown};
use crate::acquire::{AcquireSettings, Evidence, acquire};
use crate::destination::EvidenceSet;
use crate::host::HostFacts;
use crate::pipeline::Control;
use crate::report::{SourceReport, Status};
use crate::symbols::{self, InputBytes};
use airf_evidence::memory::{MemoryFacts, MemorySource, SourceAttempt};
use airf_evidence::symbols::names;

/// Where the running kernel's banner is read from.
const PROC_VERSION: &str = "/proc/version";

/// Why no memory acquisition could start.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// `/proc/iomem` could not be read or holds no usable RAM ranges.
    #[error("{0}")]
    RamMap(String),
    /// No memory source could be opened; each one's cause is listed.
    #[error(transparent)]
    NoSource(#[from] NoSource),
}

/// A memory source opened and ready to stream.
#[derive(Debug)]
pub struct PreparedMemory {
    map: RamMap,
    opened: OpenedSource,
    banner: String,
}

impl PreparedMemory {
    /// The source that will be read.
    pub fn source(&self) -> MemorySource {
        self.opened.source
    }

    /// Sources tried before it, each with why it was not used.
    pub fn skipped(&self) -> &[SourceAttempt] {
        &self.opened.skipped
    }

    /// False when `/proc/version` was unreadable: the image is then checked for any kernel's
    /// banner ([`content::GENERIC_BANNER`]) instead of this kernel's.
    pub fn knows_the_banner(&self) -> bool {
        !self.banner.is_empty()
    }
}

/// Reads the RAM map and opens the first usable source of `choice`.
pub fn prepare(
    choice: SourceChoice,
    lime: &LimeOptions,
    host: &HostFacts,
) -> Result<PreparedMemory, PrepareError> {
    let map = read_ram_map().map_err(PrepareError::RamMap)?;
    let opened = open_source(choice, &map.ram, lime, &host.kernel_release)?;
    let banner = std::fs::read_to_string(PROC_VERSION)
        .map(|s| s.trim_end().to_owned())
        .unwrap_or_default();
    Ok(PreparedMemory {
        map,
        opened,
        banner,
    })
}

/// What to do besides the image.
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryOptions {
    /// Lift `kernel.kptr_restrict=2` for the kallsyms read (put back at once, recorded).
    pub allow_sysctl: bool,
    /// Build the Volatility symbol table here, after the image is stored.
    pub symbols: bool,
}

/// Stores the artifacts, then streams the memory image into `set` as `memory.lime.zst` +
/// `memory.manifest.json`, then (with `options.symbols`) the symbol table. LiME, when it was
/// the source, is unloaded before this returns.
pub fn acquire_memory(
    prepared: PreparedMemory,
    set: &EvidenceSet,
    host: &HostFacts,
    settings: &AcquireSettings,
    control: &Arc<Control>,
    options: MemoryOptions,
) -> SourceReport {
    let PreparedMemory {
        map,
        opened,
        banner,
    } = prepared;
    let collected = artifacts::collect(set, options.allow_sysctl);
    let symbol_problems = collected
        .symbol_inputs
        .as_ref()
        .map(|s| s.problems.clone())
        .unwrap_or_default();
    let ram = map.ram.clone();
    let size = iomem::lime_image_size(&ram);
    let OpenedSource {
        producer,
        source,
        skipped,
        lime_module,
        kcore_segments,
        partial_pages,
    } = opened;
    // Every memory image is checked for its content, whichever source made it.
    let mut producer = ScannedProducer::new(producer, &map, &content::banner_needle(&banner));
    let facts = MemoryFacts {
        source_used: source,
        sources_skipped: skipped,
        format: "lime".into(),
        ram_bytes: ram.iter().map(|r| r.size()).sum(),
        ram_ranges: ram,
        banner,
        kernel_release: host.kernel_release.clone(),
        boot_id: host.boot_id.clone(),
        lime_module,
        kcore_segments,
        artifacts: collected.stored,
        artifacts_missing: collected.missing,
        partial_pages,
        unreadable_offsets: "physical_address".into(),
        lockdown: lockdown::current(),
        content: None,
        symbol_inputs: collected.symbol_inputs,
    };
    let mut report = acquire(
        &mut producer,
        Evidence::memory(facts, size),
        set,
        host,
        settings,
        control,
    );
    for p in symbol_problems {
        report.warnings.push(format!("no symbol table: {p}"));
    }
    if options.symbols
        && report.status == Status::Complete
        && let Some(inputs) = collected.input_bytes
    {
        store_table(&inputs, set, &mut report);
    }
    report
}

/// Builds the symbol table from the inputs just stored and stores it beside the image; a
/// failure is a warning, because the image itself is whole.
fn store_table(inputs: &InputBytes, set: &EvidenceSet, report: &mut SourceReport) {
    let built = match symbols::build(inputs, None, "airf-agent memory --symbols") {
        Ok(b) => b,
        Err(e) => {
            report.warnings.push(format!("no symbol table: {e}"));
            return;
        }
    };
    let manifest = symbols::manifest_bytes(&built.manifest);
    let stored = set
        .put_file(names::TABLE, built.xz, "application/x-xz")
        .and_then(|t| {
            set.put_file(names::TABLE_MANIFEST, manifest, "application/json")
                .map(|_| t)
        });
    match stored {
        Ok(t) => report.symbol_table = t,
        Err(e) => report
            .warnings
            .push(format!("storing the symbol table failed: {e}")),
    }
}
