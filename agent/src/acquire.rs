//! One acquisition, start to finish: open the sink, run the pipeline, finish or abort, then
//! store the manifest last. Shared by every kind of source.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use airf_evidence::memory::MemoryFacts;
use airf_evidence::{EvidenceKind, Extra};

use crate::destination::{EvidenceSet, PartSizing};
use crate::host::HostFacts;
use crate::manifest::{
    AgentFootprint, CompressedFacts, EvidenceStatus, Manifest, RawFacts, SourceFacts,
};
use crate::pipeline::{self, Control, EvidenceProducer, PipelineConfig};
use crate::report::{SourceReport, Status};
use crate::source::block_device::{Disk, DiskFacts, DiskKind};
use crate::source::direct::DirectReader;
use crate::source::disk_producer::DiskProducer;
use crate::source::resilient::ChunkReader;

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

/// One piece of evidence to acquire: what it is, what its objects are called and what the
/// manifest says about its source.
#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    /// How progress and the run report name it, e.g. `/dev/nvme1n1` or `memory (kcore)`.
    pub label: String,
    /// Memory or disk.
    pub kind: EvidenceKind,
    /// Object names start with this: `<stem>.<format>.zst` and `<stem>.manifest.json`.
    pub stem: String,
    /// Bytes the raw stream will have, when known (sizes the S3 parts, shows progress).
    pub size_hint: Option<u64>,
    /// The manifest's facts about the source.
    pub facts: SourceFacts,
}

impl Evidence {
    /// A disk, stored as `<stem>.raw.zst`.
    pub fn disk(stem: &str, facts: DiskFacts) -> Self {
        Self {
            label: facts.path.display().to_string(),
            kind: EvidenceKind::Disk,
            stem: stem.to_owned(),
            size_hint: Some(facts.size),
            facts: SourceFacts::Disk(facts),
        }
    }

    /// Physical memory, stored as `memory.lime.zst`; `size` is the LiME image's.
    pub fn memory(facts: MemoryFacts, size: u64) -> Self {
        Self {
            label: format!("memory ({})", facts.source_used),
            kind: EvidenceKind::Memory,
            stem: "memory".to_owned(),
            size_hint: Some(size),
            facts: SourceFacts::Memory(Box::new(facts)),
        }
    }

    /// The image's object name: the stem, then the raw stream's format and zstd's extension.
    pub fn image_name(&self) -> String {
        let format = match self.kind {
            EvidenceKind::Memory => "lime",
            EvidenceKind::Disk | EvidenceKind::Triage | EvidenceKind::Unknown(_) => "raw",
        };
        format!("{}.{format}.zst", self.stem)
    }

    /// The manifest's object name.
    pub fn manifest_name(&self) -> String {
        format!("{}.manifest.json", self.stem)
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
    let evidence = Evidence::disk(stem, disk.facts.clone());
    let size = disk.facts.size;
    let sector = disk.facts.sector_size as usize;
    let cache_handle = disk.file.try_clone().ok();
    let direct = sector_exact_reader(&disk);
    let mut reader = ChunkReader::new(disk.file, evidence.label.clone(), size, sector);
    if let Some(direct) = direct {
        reader = reader.with_sector_reader(Box::new(direct));
    }
    let mut producer = DiskProducer::new(reader, cache_handle);
    acquire(&mut producer, evidence, set, host, settings, control)
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

/// Acquires any evidence stream: `producer` streams what `evidence` describes into `set`.
pub fn acquire(
    producer: &mut dyn EvidenceProducer,
    evidence: Evidence,
    set: &EvidenceSet,
    host: &HostFacts,
    settings: &AcquireSettings,
    control: &Arc<Control>,
) -> SourceReport {
    let started_at = time::OffsetDateTime::now_utc();
    let clock = Instant::now();
    control.raw_read.store(0, Ordering::Relaxed);
    control.compressed_written.store(0, Ordering::Relaxed);
    let (image_name, manifest_name) = (evidence.image_name(), evidence.manifest_name());
    let Evidence {
        label,
        kind,
        size_hint,
        mut facts,
        ..
    } = evidence;
    let mut report = SourceReport::failed(label.clone());
    let finish = |mut r: SourceReport| {
        r.duration_seconds = clock.elapsed().as_secs_f64();
        r.throughput_mb_s = r.raw_size as f64 / 1e6 / r.duration_seconds.max(1e-6);
        r
    };
    let frame = settings.pipeline.frame_size as u64;
    let sizing = PartSizing {
        size_hint,
        frame_size: frame,
        requested: settings.part_size,
    };
    let mut sink = match set.open_image(&image_name, &sizing) {
        Ok(s) => s,
        Err(e) => {
            report.error = Some(e.to_string());
            return finish(report);
        }
    };
    let progress =
        crate::progress::Progress::start(settings.progress, label, size_hint, Arc::clone(control));
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
            report.warnings.extend(sink.take_warnings());
            return finish(report);
        }
    };
    let finished = sink.finish();
    report.warnings.extend(sink.take_warnings());
    let image = match finished {
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
        .and_then(airf_evidence::content::MemoryContent::hollow_reason);
    producer.complete_facts(&mut facts);
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
    let mut warnings = Vec::new();
    if output.raw_size == 0 {
        warnings.push(format!(
            "{label_} is empty: 0 bytes were read, so the image holds nothing; check that this is the source you meant",
            label_ = report.source
        ));
    }
    report.raw_size = output.raw_size;
    report.raw_sha256 = Some(output.raw_sha256.clone());
    report.compressed_size = output.compressed_size;
    report.compressed_sha256 = Some(output.compressed_sha256.clone());
    report.unreadable_bytes = unreadable.total_bytes;
    report.unreadable_ranges = unreadable.ranges.len() as u64 + unreadable.omitted;
    report.image = Some(image.clone());
    let image_location = image.location.clone();
    let manifest = Manifest {
        schema_version: crate::manifest::SCHEMA_VERSION,
        tool: crate::manifest::this_tool(),
        case: settings.case.clone(),
        kind,
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
        warnings: warnings.clone(),
        extra: Extra::new(),
    };
    let json = match crate::manifest::to_json(&manifest) {
        Ok(j) => j,
        Err(e) => {
            report.error = Some(format!(
                "the image {image_location} was stored but its manifest could not be written ({e}): it is whole but unproven, not evidence until verified"
            ));
            return finish(report);
        }
    };
    match set.put_file(&manifest_name, json.clone(), "application/json") {
        Ok(Some(stored)) => report.manifest = Some(stored),
        // Stdout holds the image: the manifest travels in the report instead.
        Ok(None) => match serde_json::from_slice(&json) {
            Ok(inline) => report.manifest_inline = Some(inline),
            Err(e) => {
                report.error = Some(format!(
                    "the image was written but its manifest could not be reported: {e}"
                ));
                return finish(report);
            }
        },
        Err(e) => {
            // The image is whole, but without its manifest nobody can prove it: report failure,
            // and name the object so nobody takes it for evidence or wonders where it came from.
            report.error = Some(format!(
                "the image {image_location} was stored but its manifest was not ({e}): the image is whole but unproven, not evidence until verified"
            ));
            return finish(report);
        }
    }
    report.warnings.extend(warnings);
    report.status = match status {
        EvidenceStatus::Complete => Status::Complete,
        EvidenceStatus::CompletedWithReadErrors => Status::CompletedWithReadErrors,
        EvidenceStatus::Hollow => Status::Hollow,
        EvidenceStatus::Unknown => Status::Unknown,
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
