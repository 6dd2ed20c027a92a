//! Options and plumbing shared by the subcommands.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use airf_agent::acquire::AcquireSettings;
use airf_agent::destination::{DestSpec, EvidenceSet, UploadSettings};
use airf_agent::host::HostFacts;
use airf_agent::pipeline::{Control, PipelineConfig};
use airf_agent::progress::ProgressMode;
use airf_agent::report::{SourceReport, Status, human_summary, run_report};
use airf_agent::s3_client::S3Options;
use clap::Args;

pub const EXIT_HELP: &str = "Exit status: 0 complete (or verified intact), 1 failed, 2 bad usage, \
3 completed with read errors (image whole, unreadable ranges zero-filled and listed), \
4 verify found the evidence NOT intact, 130/143 interrupted by SIGINT/SIGTERM.";

/// S3 connection options.
#[derive(Debug, Clone, Args)]
pub struct S3Args {
    /// AWS region of the bucket (default: AWS_REGION, the profile, or the instance's region).
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
    /// S3-compatible endpoint, e.g. http://127.0.0.1:3900 (also read from AWS_ENDPOINT_URL).
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
}

impl S3Args {
    pub fn options(&self) -> S3Options {
        S3Options {
            region: self.region.clone(),
            endpoint_url: self.endpoint_url.clone(),
            max_attempts: 5,
        }
    }
}

/// Where evidence goes and how it is compressed and uploaded: the same for every source.
#[derive(Debug, Clone, Args)]
pub struct AcquireArgs {
    /// Destination: s3://BUCKET/PREFIX/, a local directory, or - for stdout.
    #[arg(long, value_name = "DEST")]
    pub to: String,
    /// Case identifier (1-128 of A-Z a-z 0-9 . _ -, starting with a letter or digit; never rewritten); evidence goes under <prefix>/<case>/<instance-id or hostname>/<UTC time>-<run id>/.
    #[arg(long, default_value = "unassigned", value_name = "ID")]
    pub case: String,
    /// S3 part size, e.g. 16MiB (default: chosen from the source size so 10,000 parts always suffice).
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    pub part_size: Option<u64>,
    /// Parts uploaded in parallel.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64), value_name = "N")]
    pub concurrency: u16,
    /// zstd level (1 = fastest; higher is smaller and slower, and a slow capture is a smeared one).
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

/// One acquisition command from parsed options to exit code: validation, the evidence set,
/// per-source stderr lines and the final JSON result, the same for `disk` and `memory`.
pub struct Session<'a> {
    command: &'static str,
    args: &'a AcquireArgs,
    clock: Instant,
    to_stdout: bool,
    json: bool,
}

/// Why a session could not start.
#[derive(Debug)]
pub enum StartError {
    /// The command line cannot work (exit 2).
    Usage(String),
    /// Something else (exit 1).
    Failed(String),
}

/// What a session has checked and started before any source is read.
pub struct Started {
    pub spec: DestSpec,
    pub frame_size: usize,
    pub rt: tokio::runtime::Runtime,
    pub control: Arc<Control>,
    pub signal: Arc<AtomicI32>,
}

impl<'a> Session<'a> {
    pub fn new(command: &'static str, args: &'a AcquireArgs) -> Self {
        let to_stdout = args.to == "-";
        Self {
            command,
            args,
            clock: Instant::now(),
            to_stdout,
            json: args.output.json_wanted() || to_stdout,
        }
    }

    pub fn to_stdout(&self) -> bool {
        self.to_stdout
    }

    /// The case id given with `--case`.
    pub fn case(&self) -> &str {
        &self.args.case
    }

    /// Whether progress lines are wanted on stderr.
    pub fn progress_wanted(&self) -> bool {
        !self.args.output.no_progress
    }

    /// Checks every option, then starts the I/O runtime and the signal watcher. Nothing is
    /// read, gathered or contacted before the options are known to be usable: a typo costs
    /// nothing and exits 2.
    pub fn start(&self) -> Result<Started, StartError> {
        let spec = self.check_options().map_err(StartError::Usage)?;
        if self.to_stdout && std::io::stdout().is_terminal() {
            return Err(StartError::Usage("--to - writes the compressed image to stdout, which is a terminal; pipe it into a command or a file, or give a directory".into()));
        }
        let frame_size = usize::try_from(self.args.frame_size).unwrap_or(usize::MAX);
        let rt = runtime()
            .map_err(|e| StartError::Failed(format!("cannot start the I/O runtime: {e}")))?;
        let control = Arc::new(Control::default());
        let signal = watch_signals(&rt, Arc::clone(&control));
        Ok(Started {
            spec,
            frame_size,
            rt,
            control,
            signal,
        })
    }

    /// The checks of [`Self::start`] that need nothing but the command line.
    fn check_options(&self) -> Result<DestSpec, String> {
        let spec: DestSpec = self.args.to.parse().map_err(|e| format!("{e}"))?;
        airf_agent::naming::check_case_id(&self.args.case).map_err(|e| e.to_string())?;
        let frame_ok = usize::try_from(self.args.frame_size)
            .is_ok_and(|f| (4096..=airf_agent::seekable::MAX_FRAME_SIZE).contains(&f));
        if !frame_ok {
            return Err(format!(
                "--frame-size {} must be between 4 KiB and 1 GiB",
                self.args.frame_size
            ));
        }
        match self.args.part_size {
            Some(0) => return Err("--part-size 0 is not a size: give e.g. 16MiB, or leave it unset to have it chosen from the source size".into()),
            // Only S3 has parts; whether a size suits the source is checked once its size is known.
            Some(p) if matches!(spec, DestSpec::S3 { .. })
                && !(airf_agent::part_size::MIN_PART..=airf_agent::part_size::MAX_PART).contains(&p) =>
            {
                return Err(airf_agent::part_size::PartSizeError::OutOfRange(p).to_string());
            }
            _ => {}
        }
        Ok(spec)
    }

    /// The evidence folder for this run, with an S3 client when the destination is S3.
    pub fn evidence_set(&self, started: &Started, host: &HostFacts) -> Result<EvidenceSet, String> {
        self.evidence_set_named(started, &airf_agent::host::evidence_name(host))
    }

    /// The evidence folder for this run, filed under `name` (an instance id) instead of this
    /// machine's own name: `snapshot` runs elsewhere than the instance its evidence is from.
    pub fn evidence_set_named(&self, started: &Started, name: &str) -> Result<EvidenceSet, String> {
        let s3 = match &started.spec {
            DestSpec::S3 { .. } => Some((
                started
                    .rt
                    .block_on(airf_agent::s3_client::build(&self.args.s3.options())),
                started.rt.handle().clone(),
            )),
            _ => None,
        };
        let settings = UploadSettings {
            concurrency: usize::from(self.args.concurrency),
            sse_kms_key_id: self.args.sse_kms_key_id.clone(),
            abort_deadline: Duration::from_secs(self.args.abort_timeout),
        };
        EvidenceSet::new(
            started.spec.clone(),
            s3,
            settings,
            &self.args.case,
            name,
            time::OffsetDateTime::now_utc(),
        )
        .map_err(|e| e.to_string())
    }

    pub fn acquire_settings(&self, frame_size: usize) -> AcquireSettings {
        AcquireSettings {
            case: self.args.case.clone(),
            pipeline: PipelineConfig {
                frame_size,
                level: self.args.level,
                threads: self
                    .args
                    .threads
                    .map_or_else(airf_agent::pipeline::default_threads, usize::from),
            },
            part_size: self.args.part_size,
            progress: ProgressMode::detect(self.args.output.no_progress),
        }
    }

    /// Fails before anything was stored: the cause on stderr, a failed result, its exit code.
    pub fn fail(&self, msg: String) -> i32 {
        eprintln!("airf-agent: error: {msg}");
        self.finish(None, Vec::new(), vec![msg], None)
    }

    /// Refuses the command line before anything was touched: exit 2, the rule on stderr.
    pub fn usage(&self, msg: String) -> i32 {
        eprintln!("airf-agent: error: {msg}");
        self.report(
            None,
            Vec::new(),
            vec![msg],
            None,
            Some(airf_agent::report::exit::USAGE),
        )
    }

    /// [`Self::fail`] or [`Self::usage`], as `e` says.
    pub fn refuse(&self, e: StartError) -> i32 {
        match e {
            StartError::Usage(msg) => self.usage(msg),
            StartError::Failed(msg) => self.fail(msg),
        }
    }

    /// Prints the result of all sources and returns the exit code. With an S3 evidence set in
    /// which a manifest was stored, the result is also stored there as
    /// [`airf_evidence::report::RESULT_OBJECT`]: SSM truncates stdout at 24,000 characters.
    pub fn finish(
        &self,
        set: Option<&EvidenceSet>,
        sources: Vec<SourceReport>,
        errors: Vec<String>,
        signal: Option<&AtomicI32>,
    ) -> i32 {
        self.report(set, sources, errors, signal, None)
    }

    fn report(
        &self,
        set: Option<&EvidenceSet>,
        sources: Vec<SourceReport>,
        errors: Vec<String>,
        signal: Option<&AtomicI32>,
        exit_code: Option<i32>,
    ) -> i32 {
        let folder = set.map_or("", |s| s.folder.as_str());
        let sig = signal.map(|s| s.load(Ordering::SeqCst)).filter(|&s| s != 0);
        let mut report = run_report(
            self.command,
            &self.args.case,
            folder,
            sources,
            errors,
            self.clock.elapsed().as_secs_f64(),
            sig,
        );
        if let Some(code) = exit_code {
            report.exit_code = code;
        }
        if let Some(set) = set {
            store_result(set, &report);
        }
        emit(&report, &human_summary(&report), self.json, self.to_stdout);
        report.exit_code
    }
}

/// Stores the result next to the evidence it describes, when evidence was stored in S3 (a run
/// that stored nothing leaves nothing behind). Best effort: stdout still carries the result.
fn store_result(set: &EvidenceSet, report: &airf_agent::report::RunReport) {
    if !matches!(set.spec(), DestSpec::S3 { .. })
        || !report.sources.iter().any(|s| s.manifest.is_some())
    {
        return;
    }
    let stored = serde_json::to_vec(report)
        .map_err(|e| e.to_string())
        .and_then(|bytes| {
            set.put_file(
                airf_evidence::report::RESULT_OBJECT,
                bytes,
                "application/json",
            )
            .map_err(|e| e.to_string())
        });
    if let Err(e) = stored {
        eprintln!(
            "airf-agent: the result was not stored next to the evidence ({e}); it is on stdout only"
        );
    }
}

/// One plain-words stderr line for a source that did not complete cleanly, and one per warning.
pub fn say_outcome(r: &SourceReport) {
    for w in &r.warnings {
        eprintln!("airf-agent: {}: warning: {w}", r.source);
    }
    match r.status {
        Status::Failed | Status::Interrupted | Status::Unknown => {
            eprintln!(
                "airf-agent: {}: {}",
                r.source,
                r.error.as_deref().unwrap_or("failed")
            );
            if let Some(c) = r.cleanup.as_ref().filter(|c| !c.clean) {
                eprintln!("airf-agent: {}", c.detail);
            }
        }
        Status::Hollow => eprintln!(
            "airf-agent: {}: HOLLOW: {}",
            r.source,
            r.error
                .as_deref()
                .unwrap_or("memory is missing from the image")
        ),
        Status::CompletedWithReadErrors => eprintln!(
            "airf-agent: {}: completed with read errors: {} bytes in {} range(s) unreadable, zero-filled and listed in the manifest",
            r.source, r.unreadable_bytes, r.unreadable_ranges
        ),
        Status::Complete => {}
    }
}

/// Output options.
#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// Print the JSON result on stdout even on a terminal (it always is when stdout is not one).
    #[arg(long)]
    pub json: bool,
    /// No progress bar or progress lines on stderr.
    #[arg(long)]
    pub no_progress: bool,
}

impl OutputArgs {
    /// JSON for machines; people at a terminal get a summary unless they ask for JSON.
    pub fn json_wanted(&self) -> bool {
        self.json || !std::io::stdout().is_terminal()
    }
}

pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AIRF_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // SSM and Step Functions capture stderr as text: colour codes only for a terminal.
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

/// The I/O runtime, or the exit status after saying why it could not start.
pub fn runtime_or_exit() -> Result<tokio::runtime::Runtime, i32> {
    runtime().map_err(|e| {
        eprintln!("airf-agent: error: cannot start the I/O runtime: {e}");
        airf_agent::report::exit::FAILED
    })
}

/// An S3 client when `loc` is in S3 (local files need none).
pub fn s3_client_for(
    loc: &airf_agent::verify::Location,
    rt: &tokio::runtime::Runtime,
    args: &S3Args,
) -> Option<aws_sdk_s3::Client> {
    matches!(loc, airf_agent::verify::Location::S3 { .. })
        .then(|| rt.block_on(airf_agent::s3_client::build(&args.options())))
}

pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("airf-io")
        .enable_all()
        .build()
}

/// Listens for SIGINT and SIGTERM: the first sets the pipeline's cancel flag (so uploads are
/// aborted and nothing claims success) and records which signal it was.
pub fn watch_signals(rt: &tokio::runtime::Runtime, control: Arc<Control>) -> Arc<AtomicI32> {
    let got = Arc::new(AtomicI32::new(0));
    let seen = Arc::clone(&got);
    rt.spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        loop {
            let sig = tokio::select! {
                _ = int.recv() => nix::libc::SIGINT,
                _ = term.recv() => nix::libc::SIGTERM,
            };
            if seen.swap(sig, Ordering::SeqCst) == 0 {
                eprintln!(
                    "airf-agent: signal received: stopping; an unfinished upload is removed, evidence whose manifest is stored is kept and reported complete"
                );
            }
            control.cancel.store(true, Ordering::SeqCst);
        }
    });
    got
}

/// Parses sizes such as `8MiB`, `16M`, `1g` or `1048576`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 8MiB, 64M, 1GiB)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => {
            return Err(format!(
                "{s:?}: unknown unit {unit:?} (use KiB, MiB or GiB)"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Writes the JSON result (or a summary for people) where it belongs.
pub fn emit<T: serde::Serialize>(value: &T, human: &str, json: bool, to_stderr: bool) {
    let text = if json {
        serde_json::to_string_pretty(value)
            .unwrap_or_else(|e| format!("{{\"status\":\"failed\",\"errors\":[\"{e}\"]}}"))
    } else {
        human.trim_end().to_owned()
    };
    if to_stderr {
        eprintln!("{text}");
    } else {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("8MiB"), Ok(8 << 20));
        assert_eq!(parse_size("16m"), Ok(16 << 20));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5 parsecs").is_err());
    }
}
