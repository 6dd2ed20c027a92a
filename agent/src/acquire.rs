//! One acquisition, start to finish: open the sink, run the pipeline, finish or abort, then
//! store the manifest last. Shared by every kind of source.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::destination::EvidenceSet;
use crate::host::HostFacts;
use crate::manifest::{
    AgentFootprint, CompressedFacts, EvidenceStatus, Manifest, RawFacts, SourceFacts, Tool,
};
use crate::pipeline::{self, Control, PipelineConfig, ProduceError, Producer};
use crate::report::{SourceReport, Status};
use crate::source::ReadAt;
use crate::source::block_device::{Disk, DiskKind, drop_cached};
use crate::source::direct::DirectReader;
use crate::source::resilient::{BadRanges, ChunkReader};

/// Settings for every acquisition of a run.
#[derive(Debug, Clone)]
pub struct AcquireSettings {
    /// Case id.
    pub case: String,
    /// Pipeline settings.
    pub pipeline: PipelineConfig,
    /// Requested part size (None: automatic).
    pub part_size: Option<u64>,
    /// How progress is shown.
    pub progress: crate::progress::ProgressMode,
}

/// A producer that also knows which ranges it could not read.
pub trait EvidenceProducer: Producer {
    /// Unreadable ranges so far.
    fn unreadable(&self) -> BadRanges;

    /// What a memory image was found to hold, once the stream is over (memory sources only;
    /// taken once).
    fn take_content(&mut self) -> Option<crate::memory::content::MemoryContent> {
        None
    }
}

/// Reads a disk front to back in chunks, through media errors.
#[derive(Debug)]
pub struct DiskProducer<R> {
    reader: ChunkReader<R>,
    offset: u64,
    bad: BadRanges,
    drop_cache: Option<std::fs::File>,
}

impl<R: ReadAt> DiskProducer<R> {
    /// Wraps a chunk reader; `drop_cache`, when given, gets POSIX_FADV_DONTNEED after each read.
    pub fn new(reader: ChunkReader<R>, drop_cache: Option<std::fs::File>) -> Self {
        Self {
            reader,
            offset: 0,
            bad: BadRanges::default(),
            drop_cache,
        }
    }
}

impl<R: ReadAt> Producer for DiskProducer<R> {
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize, ProduceError> {
        let left = self.reader.size().saturating_sub(self.offset);
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        let Some(dst) = buf.get_mut(..n) else {
            return Ok(0);
        };
        if n == 0 {
            return Ok(0);
        }
        self.reader.read_chunk(self.offset, dst, &mut self.bad)?;
        if let Some(f) = &self.drop_cache {
            drop_cached(f, self.offset, n as u64);
        }
        self.offset += n as u64;
        Ok(n)
    }
}

impl<R: ReadAt> EvidenceProducer for DiskProducer<R> {
    fn unreadable(&self) -> BadRanges {
        self.bad.clone()
    }
}

/// What to call a disk's objects: the device or file name, made path-safe.
pub fn disk_object_stem(disk: &Disk) -> String {
    let name = disk
        .facts
        .canonical_path
        .file_name()
        .or_else(|| disk.facts.path.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "disk".into());
    crate::host::sanitize(&name)
}

/// Acquires one disk into `set` as `<stem>.raw.zst` + `<stem>.manifest.json`.
pub fn acquire_disk(
    disk: Disk,
    stem: &str,
    set: &EvidenceSet,
    host: &HostFacts,
    settings: &AcquireSettings,
    control: &Arc<Control>,
) -> SourceReport {
    let label = disk.facts.path.display().to_string();
    let size = disk.facts.size;
    let sector = disk.facts.sector_size as usize;
    let facts = SourceFacts::Disk(disk.facts.clone());
    let cache_handle = disk.file.try_clone().ok();
    let direct = sector_exact_reader(&disk);
    let mut reader = ChunkReader::new(disk.file, label.clone(), size, sector);
    if let Some(direct) = direct {
        reader = reader.with_sector_reader(Box::new(direct));
    }
    let mut producer = DiskProducer::new(reader, cache_handle);
    acquire(
        &mut producer,
        &label,
        "disk",
        stem,
        "raw.zst",
        Some(size),
        facts,
        set,
        host,
        settings,
        control,
    )
}

/// An `O_DIRECT` handle on a block device for sector-exact retries (none for image files, or
/// when the device refuses direct I/O: then retries go through the page cache).
fn sector_exact_reader(disk: &Disk) -> Option<DirectReader> {
    let facts = &disk.facts;
    if facts.kind != DiskKind::BlockDevice {
        return None;
    }
    let buffered = disk.file.try_clone().ok()?;
    match DirectReader::open(&facts.canonical_path, buffered, facts.sector_size as usize) {
        Ok(d) => Some(d),
        Err(e) => {
            tracing::info!(
                "{}: no O_DIRECT ({e}); sector retries go through the page cache",
                facts.path.display()
            );
            None
        }
    }
}

/// Acquires any evidence stream.
#[allow(clippy::too_many_arguments)]
pub fn acquire(
    producer: &mut dyn EvidenceProducer,
    label: &str,
    kind: &str,
    stem: &str,
    extension: &str,
    size_hint: Option<u64>,
    mut facts: SourceFacts,
    set: &EvidenceSet,
    host: &HostFacts,
    settings: &AcquireSettings,
    control: &Arc<Control>,
) -> SourceReport {
    let started_at = time::OffsetDateTime::now_utc();
    let clock = Instant::now();
    control.raw_read.store(0, Ordering::Relaxed);
    control.compressed_written.store(0, Ordering::Relaxed);
    let mut report = SourceReport {
        source: label.to_owned(),
        status: Status::Failed,
        image: None,
        manifest: None,
        manifest_inline: None,
        raw_size: 0,
        raw_sha256: None,
        compressed_size: 0,
        compressed_sha256: None,
        unreadable_bytes: 0,
        unreadable_ranges: 0,
        duration_seconds: 0.0,
        throughput_mb_s: 0.0,
        error: None,
        cleanup: None,
    };
    let finish = |mut r: SourceReport| {
        r.duration_seconds = clock.elapsed().as_secs_f64();
        r.throughput_mb_s = r.raw_size as f64 / 1e6 / r.duration_seconds.max(1e-6);
        r
    };
    let frame = settings.pipeline.frame_size as u64;
    let part_size = match crate::part_size::choose(size_hint, frame, settings.part_size) {
        Ok(p) => p,
        Err(e) => {
            report.error = Some(e.to_string());
            return finish(report);
        }
    };
    let image_name = format!("{stem}.{extension}");
    let mut sink = match set.open_image(&image_name, part_size) {
        Ok(s) => s,
        Err(e) => {
            report.error = Some(e.to_string());
            return finish(report);
        }
    };
    let progress = crate::progress::Progress::start(
        settings.progress,
        label.to_owned(),
        size_hint,
        Arc::clone(control),
    );
    let result = pipeline::run(producer, sink.as_mut(), &settings.pipeline, control);
    drop(progress);
    let output = match result {
        Ok(o) => o,
        Err(e) => {
            let interrupted = matches!(e, pipeline::PipelineError::Cancelled);
            report.status = if interrupted {
                Status::Interrupted
            } else {
                Status::Failed
            };
            report.error = Some(e.to_string());
            report.raw_size = control.raw_read.load(Ordering::Relaxed);
            report.cleanup = Some(sink.abort());
            return finish(report);
        }
    };
    let image = match sink.finish() {
        Ok(i) => i,
        Err(e) => {
            report.error = Some(e.to_string());
            report.cleanup = Some(sink.abort());
            return finish(report);
        }
    };
    let unreadable = producer.unreadable();
    // Right length and right hashes are not enough for memory: the content must show the
    // running kernel, or the image is hollow (see memory::content).
    let content = producer.take_content();
    let hollow = content
        .as_ref()
        .and_then(crate::memory::content::MemoryContent::hollow_reason);
    if let (SourceFacts::Memory(m), Some(c)) = (&mut facts, content) {
        m.content = Some(c);
    }
    let status = if hollow.is_some() {
        EvidenceStatus::Hollow
    } else if unreadable.is_empty() {
        EvidenceStatus::Complete
    } else {
        EvidenceStatus::CompletedWithReadErrors
    };
    report.raw_size = output.raw_size;
    report.raw_sha256 = Some(output.raw_sha256.clone());
    report.compressed_size = output.compressed_size;
    report.compressed_sha256 = Some(output.compressed_sha256.clone());
    report.unreadable_bytes = unreadable.total_bytes;
    report.unreadable_ranges = unreadable.ranges.len() as u64 + unreadable.omitted;
    report.image = Some(image.clone());
    let manifest = Manifest {
        schema_version: crate::manifest::SCHEMA_VERSION,
        tool: Tool::default(),
        case: settings.case.clone(),
        kind: kind.to_owned(),
        status,
        host: host.clone(),
        source: facts,
        started_at,
        finished_at: time::OffsetDateTime::now_utc(),
        raw: RawFacts {
            size: output.raw_size,
            sha256: output.raw_sha256,
        },
        compressed: CompressedFacts {
            format: "zstd-seekable".into(),
            size: output.compressed_size,
            sha256: output.compressed_sha256,
            level: settings.pipeline.level,
            frame_size: frame,
            frames: output.frames,
        },
        image,
        unreadable,
        agent: AgentFootprint {
            peak_rss_bytes: peak_rss_bytes(),
            threads: settings.pipeline.threads,
        },
    };
    let json = manifest.to_json();
    match set.put_file(&format!("{stem}.manifest.json"), json, "application/json") {
        Ok(Some(stored)) => report.manifest = Some(stored),
        Ok(None) => report.manifest_inline = serde_json::to_value(&manifest).ok(),
        Err(e) => {
            // The image is whole, but without its manifest nobody can prove it: report failure.
            report.error = Some(format!(
                "the image was stored but its manifest was not: {e}"
            ));
            return finish(report);
        }
    }
    report.status = match status {
        EvidenceStatus::Complete => Status::Complete,
        EvidenceStatus::CompletedWithReadErrors => Status::CompletedWithReadErrors,
        EvidenceStatus::Hollow => Status::Hollow,
    };
    report.error = hollow;
    finish(report)
}

/// Peak resident set size of this process so far.
pub fn peak_rss_bytes() -> u64 {
    nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF)
        .map(|u| u64::try_from(u.max_rss()).unwrap_or(0) * 1024)
        .unwrap_or(0)
}
