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
use crate::report::SourceReport;
use airf_evidence::memory::{MemoryFacts, MemorySource, SourceAttempt};

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

/// Stores the artifacts, then streams the memory image into `set` as `memory.lime.zst` +
/// `memory.manifest.json`. LiME, when it was the source, is unloaded before this returns.
pub fn acquire_memory(
    prepared: PreparedMemory,
    set: &EvidenceSet,
    host: &HostFacts,
    settings: &AcquireSettings,
    control: &Arc<Control>,
) -> SourceReport {
    let PreparedMemory {
        map,
        opened,
        banner,
    } = prepared;
    let (stored, missing) = artifacts::collect(set);
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
        artifacts: stored,
        artifacts_missing: missing,
        partial_pages,
        unreadable_offsets: "physical_address".into(),
        lockdown: lockdown::current(),
        content: None,
    };
    acquire(
        &mut producer,
        Evidence::memory(facts, size),
        set,
        host,
        settings,
        control,
    )
}
