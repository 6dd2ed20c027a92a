//! `airf-agent disk`: acquire block devices or image files.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use airf_agent::acquire::{AcquireSettings, acquire_disk, disk_object_stem};
use airf_agent::destination::{DestSpec, EvidenceSet, UploadSettings};
use airf_agent::pipeline::{Control, PipelineConfig};
use airf_agent::progress::ProgressMode;
use airf_agent::report::{RunReport, SourceReport, Status};
use airf_agent::source::block_device;
use clap::Args;

use crate::common::{self, OutputArgs, S3Args, parse_size};

#[derive(Debug, Args)]
pub struct DiskArgs {
    /// Block devices (e.g. /dev/nvme1n1) or disk image files to acquire.
    #[arg(required = true, value_name = "DEVICE|FILE")]
    pub sources: Vec<PathBuf>,
    /// Destination: s3://BUCKET/PREFIX/, a local directory, or - for stdout.
    #[arg(long, value_name = "DEST")]
    pub to: String,
    /// Case identifier; evidence goes under <prefix>/<case>/<instance-id or hostname>/<UTC time>/.
    #[arg(long, default_value = "unassigned", value_name = "ID")]
    pub case: String,
    /// S3 part size, e.g. 16MiB (default: chosen from the source size so 10,000 parts always suffice).
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    pub part_size: Option<u64>,
    /// Parts uploaded in parallel.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64), value_name = "N")]
    pub concurrency: u16,
    /// zstd level (1 = fastest; higher is smaller and slower).
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

pub fn run(args: DiskArgs) -> i32 {
    let clock = Instant::now();
    let to_stdout = args.to == "-";
    let json = args.output.json_wanted() || to_stdout;
    let fail = |msg: String| {
        eprintln!("airf-agent: error: {msg}");
        let report = RunReport::new(
            "disk",
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
    if to_stdout && args.sources.len() > 1 {
        return fail("--to - takes exactly one source (stdout holds one image)".into());
    }
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
    let rt = match common::runtime() {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start the I/O runtime: {e}")),
    };
    let control = Arc::new(Control::default());
    let signal = common::watch_signals(&rt, Arc::clone(&control));

    // Open every source first: a typo should fail before anything is uploaded.
    let mut disks = Vec::new();
    for path in &args.sources {
        match block_device::open(path) {
            Ok(d) => disks.push(d),
            Err(e) => return fail(e.to_string()),
        }
    }
    let host = rt.block_on(airf_agent::host::gather());
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
    let started = time::OffsetDateTime::now_utc();
    let set = EvidenceSet::new(
        spec,
        s3,
        settings,
        &args.case,
        &host.evidence_name(),
        started,
    );
    let threads = args
        .threads
        .map_or_else(airf_agent::pipeline::default_threads, usize::from);
    let acquire = AcquireSettings {
        case: args.case.clone(),
        pipeline: PipelineConfig {
            frame_size,
            level: args.level,
            threads,
        },
        part_size: args.part_size,
        progress: ProgressMode::detect(args.output.no_progress),
    };

    let mut reports: Vec<SourceReport> = Vec::new();
    let mut stems: Vec<String> = Vec::new();
    for disk in disks {
        if control.cancel.load(Ordering::SeqCst) {
            break;
        }
        let mut stem = disk_object_stem(&disk);
        let base = stem.clone();
        let mut n = 2;
        while stems.contains(&stem) {
            stem = format!("{base}-{n}");
            n += 1;
        }
        stems.push(stem.clone());
        let r = acquire_disk(disk, &stem, &set, &host, &acquire, &control);
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
        reports.push(r);
    }
    let sig = match signal.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    };
    let report = RunReport::new(
        "disk",
        &args.case,
        &set.folder,
        reports,
        Vec::new(),
        clock.elapsed().as_secs_f64(),
        sig,
    );
    common::emit(&report, &report.human_summary(), json, to_stdout);
    report.exit_code
}
