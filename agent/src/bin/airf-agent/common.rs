//! Options and plumbing shared by the subcommands.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use airf_agent::pipeline::Control;
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
        .with_target(false)
        .try_init();
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
                eprintln!("airf-agent: signal received, stopping and removing the partial upload…");
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
