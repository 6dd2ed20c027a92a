//! `airf-agent memory`: acquire physical memory as a LiME-format image.

use std::path::PathBuf;
use std::time::Duration;

use airf_agent::memory::lime::LimeTimeouts;
use airf_agent::memory::{self, LimeOptions, MemorySource, SourceChoice, content};
use clap::{Args, ValueEnum};

use crate::common::{AcquireArgs, Session, say_outcome};

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
    /// Testing only: LiME's `timeout` parameter in ms. Above 0, LiME zero-fills the rest of a
    /// range when one page write is slower, which is how the tests make a hollow image on
    /// purpose. Default 0: LiME never skips.
    #[arg(long, default_value_t = 0, value_name = "MS", hide = true)]
    pub lime_page_timeout_ms: u64,
    /// Also build the Volatility symbol table (memory.isf.json.xz) here, after the image is
    /// stored. Costs CPU on the suspect; without it, run `airf-agent symbols` (or the workflow)
    /// anywhere later.
    #[arg(long)]
    pub symbols: bool,
    /// Never change a sysctl. By default, when kernel.kptr_restrict=2 hides every kallsyms
    /// address, it is set to 1 for that one read and put back at once (recorded in the manifest).
    #[arg(long)]
    pub no_sysctl_changes: bool,
    #[command(flatten)]
    pub acquire: AcquireArgs,
}

pub fn run(args: MemoryArgs) -> i32 {
    let session = Session::new("memory", &args.acquire);
    let started = match session.start() {
        Ok(s) => s,
        Err(e) => return session.refuse(e),
    };
    let choice = match args.source {
        SourceArg::Auto => SourceChoice::Auto,
        SourceArg::Kcore => SourceChoice::Only(MemorySource::Kcore),
        SourceArg::Lime => SourceChoice::Only(MemorySource::Lime),
    };
    let host = started.rt.block_on(airf_agent::host::gather());
    let lime = LimeOptions {
        module: args.lime_module.clone(),
        sha256: args.lime_sha256.clone(),
        timeouts: LimeTimeouts {
            connect: Duration::from_secs(args.lime_timeout),
            stall: Duration::from_secs(args.lime_timeout),
            page_timeout_ms: args.lime_page_timeout_ms,
            ..LimeTimeouts::default()
        },
    };
    // Open the source before anything is stored: a refused module stores nothing.
    let prepared = match memory::prepare(choice, &lime, &host) {
        Ok(p) => p,
        Err(e) => return session.fail(e.to_string()),
    };
    // A fallback is worth a line in plain words: the responder should know why kcore was not used.
    for skipped in prepared.skipped() {
        eprintln!(
            "airf-agent: not using {}: {}; using {} instead",
            skipped.source,
            skipped.cause,
            prepared.source()
        );
    }
    if !prepared.knows_the_banner() {
        eprintln!(
            "airf-agent: /proc/version is unreadable: the image is checked for any \"{}\" banner instead of this kernel's",
            content::GENERIC_BANNER
        );
    }
    let set = match session.evidence_set(&started, &host) {
        Ok(s) => s,
        Err(e) => return session.usage(e),
    };
    let settings = session.acquire_settings(started.frame_size);
    let options = memory::MemoryOptions {
        allow_sysctl: !args.no_sysctl_changes,
        symbols: args.symbols,
    };
    let r = memory::acquire_memory(prepared, &set, &host, &settings, &started.control, options);
    say_outcome(&r);
    set.remove_empty_folders();
    session.finish(Some(&set), vec![r], Vec::new(), Some(&started.signal))
}
