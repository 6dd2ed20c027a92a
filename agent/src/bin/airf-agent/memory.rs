//! `airf-agent memory`: acquire physical memory as a LiME-format image.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use airf_agent::acquire::{AcquireSettings, acquire};
use airf_agent::destination::{DestSpec, EvidenceSet, UploadSettings};
use airf_agent::manifest::SourceFacts;
use airf_agent::memory::lime_module::LimeTimeouts;
use airf_agent::memory::{
    self, LimeOptions, MemoryFacts, MemorySource, SourceChoice, artifacts, iomem,
};
use airf_agent::pipeline::{Control, PipelineConfig};
use airf_agent::progress::ProgressMode;
use airf_agent::report::{RunReport, Status};
use clap::{Args, ValueEnum};

use crate::common::{self, OutputArgs, S3Args, parse_size};

/// `--source`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SourceArg {
    /// /proc/kcore first, LiME when kcore cannot be used.
    Auto,
    /// Only /proc/kcore.
    Kcore,
    /// Only LiME (needs --lime-module and --lime-sha256).
    Lime,
}

#[derive(Debug, Args)]
pub struct MemoryArgs {
    /// Destination: s3://BUCKET/PREFIX/, a local directory, or - for stdout.
    #[arg(long, value_name = "DEST")]
    pub to: String,
    /// Memory source.
    #[arg(long, value_enum, default_value = "auto")]
    pub source: SourceArg,
    /// LiME kernel module built for this kernel (used by --source lime, or auto when kcore fails).
    #[arg(long, value_name = "PATH")]
    pub lime_module: Option<PathBuf>,
    /// SHA-256 the LiME module must have; it is never loaded without a match.
    #[arg(long, value_name = "HEX")]
    pub lime_sha256: Option<String>,
    /// Seconds to wait for LiME's listener, and for data once streaming.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub lime_timeout: u64,
    /// Case identifier; evidence goes under <prefix>/<case>/<instance-id or hostname>/<UTC time>/.
    #[arg(long, default_value = "unassigned", value_name = "ID")]
    pub case: String,
    /// S3 part size, e.g. 16MiB (default: chosen from the RAM size so 10,000 parts always suffice).
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    pub part_size: Option<u64>,
    /// Parts uploaded in parallel.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64), value_name = "N")]
    pub concurrency: u16,
    /// zstd level (1 = fastest; a slow memory capture is a smeared one).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(-7..=19), value_name = "N")]
    pub level: i32,
    /// Compression threads (default: CPUs, at most 4).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256), value_name = "N")]
    pub threads: Option<u16>,
    /// Uncompressed bytes per seekable zstd frame.
    #[arg(long, default_value = "2MiB", value_parser = parse_size, value_name = "SIZE")]
    pub frame_size: u64,
    /// Encrypt objects with this KMS key (SSE-KMS); default: the bucket's own encryption.
    #[arg(long, value_name = "KEY")]
    pub sse_kms_key_id: Option<String>,
    /// Seconds to keep retrying the clean-up of a failed upload when S3 is unreachable.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub abort_timeout: u64,
    #[command(flatten)]
    pub s3: S3Args,
    #[command(flatten)]
    pub output: OutputArgs,
}

pub fn run(args: MemoryArgs) -> i32 {
    let clock = Instant::now();
    let to_stdout = args.to == "-";
    let json = args.output.json_wanted() || to_stdout;
    let fail = |msg: String| {
        eprintln!("airf-agent: error: {msg}");
        let report = RunReport::new(
            "memory",
            &args.case,
            "",
            Vec::new(),
            vec![msg],
            clock.elapsed().as_secs_f64(),
            None,
        );
        common::emit(&report, &report.human_summary(), json, to_stdout);
        report.exit_code
    };
    let spec: DestSpec = match args.to.parse() {
        Ok(s) => s,
        Err(e) => return fail(format!("{e}")),
    };
    if to_stdout && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        return fail("--to - writes the compressed image to stdout, which is a terminal; pipe it into a command or a file, or give a directory".into());
    }
    let frame_size = match usize::try_from(args.frame_size) {
        Ok(f) if (4096..=airf_agent::seekable::MAX_FRAME_SIZE).contains(&f) => f,
        _ => {
            return fail(format!(
                "--frame-size {} must be between 4 KiB and 1 GiB",
                args.frame_size
            ));
        }
    };
    let choice = match args.source {
        SourceArg::Auto => SourceChoice::Auto,
        SourceArg::Kcore => SourceChoice::Only(MemorySource::Kcore),
        SourceArg::Lime => SourceChoice::Only(MemorySource::Lime),
    };
    let rt = match common::runtime() {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start the I/O runtime: {e}")),
    };
    let control = Arc::new(Control::default());
    let signal = common::watch_signals(&rt, Arc::clone(&control));

    let ram = match memory::read_ram_ranges() {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let host = rt.block_on(airf_agent::host::gather());
    let lime = LimeOptions {
        module: args.lime_module.clone(),
        sha256: args.lime_sha256.clone(),
        timeouts: LimeTimeouts {
            connect: Duration::from_secs(args.lime_timeout),
            stall: Duration::from_secs(args.lime_timeout),
            ..LimeTimeouts::default()
        },
    };
    // Open the source before anything is stored: a refused module stores nothing.
    let opened = match memory::open_source(choice, &ram, &lime, &host.kernel_release) {
        Ok(o) => o,
        Err(e) => return fail(e.to_string()),
    };
    let s3 = match &spec {
        DestSpec::S3 { .. } => Some((
            rt.block_on(airf_agent::s3_client::build(&args.s3.options())),
            rt.handle().clone(),
        )),
        _ => None,
    };
    let settings = UploadSettings {
        concurrency: usize::from(args.concurrency),
        sse_kms_key_id: args.sse_kms_key_id.clone(),
        abort_deadline: Duration::from_secs(args.abort_timeout),
    };
    let set = EvidenceSet::new(
        spec,
        s3,
        settings,
        &args.case,
        &host.evidence_name(),
        time::OffsetDateTime::now_utc(),
    );
    let (stored, missing) = artifacts::collect(&set);
    let banner = std::fs::read_to_string("/proc/version")
        .map(|s| s.trim_end().to_owned())
        .unwrap_or_default();
    let size = iomem::lime_image_size(&ram);
    let memory::OpenedSource {
        mut producer,
        source,
        skipped,
        lime_module,
        kcore_segments,
        partial_pages,
    } = opened;
    let facts = SourceFacts::Memory(Box::new(MemoryFacts {
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
    }));
    let threads = args
        .threads
        .map_or_else(airf_agent::pipeline::default_threads, usize::from);
    let settings = AcquireSettings {
        case: args.case.clone(),
        pipeline: PipelineConfig {
            frame_size,
            level: args.level,
            threads,
        },
        part_size: args.part_size,
        progress: ProgressMode::detect(args.output.no_progress),
    };
    let label = format!("memory ({source})");
    let r = acquire(
        producer.as_mut(),
        &label,
        "memory",
        "memory",
        "lime.zst",
        Some(size),
        facts,
        &set,
        &host,
        &settings,
        &control,
    );
    // Unloads LiME (if it was used) before the result is printed.
    drop(producer);
    match r.status {
        Status::Failed | Status::Interrupted => {
            eprintln!(
                "airf-agent: {}: {}",
                r.source,
                r.error.as_deref().unwrap_or("failed")
            );
            if let Some(c) = r.cleanup.as_ref().filter(|c| !c.clean) {
                eprintln!("airf-agent: {}", c.detail);
            }
        }
        Status::CompletedWithReadErrors => eprintln!(
            "airf-agent: {}: completed with read errors: {} bytes in {} range(s) unreadable, zero-filled and listed in the manifest",
            r.source, r.unreadable_bytes, r.unreadable_ranges
        ),
        Status::Complete => {}
    }
    let sig = match signal.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    };
    let report = RunReport::new(
        "memory",
        &args.case,
        &set.folder,
        vec![r],
        Vec::new(),
        clock.elapsed().as_secs_f64(),
        sig,
    );
    common::emit(&report, &report.human_summary(), json, to_stdout);
    report.exit_code
}
