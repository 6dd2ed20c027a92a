//! `airf-agent triage`: the host's volatile state, collected in seconds.

use airf_agent::triage::{TriageOptions, run_triage};
use airf_evidence::triage::Headline;
use clap::Args;

use crate::common::{AcquireArgs, Session, parse_size, say_outcome};

#[derive(Debug, Args)]
pub struct TriageArgs {
    /// Seconds for the whole collection; what is left when it runs out is listed as skipped.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600), value_name = "SECS")]
    pub time_budget: u64,
    /// Most bytes copied of one file (logs keep their newest bytes).
    #[arg(long, default_value = "16MiB", value_parser = parse_size, value_name = "SIZE")]
    pub file_budget: u64,
    /// Most bytes copied in all.
    #[arg(long, default_value = "512MiB", value_parser = parse_size, value_name = "SIZE")]
    pub total_budget: u64,
    /// Most bytes of one recovered (deleted or memfd) executable.
    #[arg(long, default_value = "256MiB", value_parser = parse_size, value_name = "SIZE")]
    pub exe_budget: u64,
    /// Keep each process's environment values (they often hold secrets; by default only their
    /// size is recorded).
    #[arg(long)]
    pub environment: bool,
    /// Do not copy /etc/shadow and /etc/gshadow.
    #[arg(long)]
    pub no_shadow: bool,
    #[command(flatten)]
    pub acquire: AcquireArgs,
}

pub fn run(args: TriageArgs) -> i32 {
    let session = Session::new("triage", &args.acquire);
    if session.to_stdout() {
        return session.usage(
            "triage stores several files: give --to s3://BUCKET/PREFIX/ or a directory, not -"
                .into(),
        );
    }
    let started = match session.start() {
        Ok(s) => s,
        Err(e) => return session.refuse(e),
    };
    let host = started.rt.block_on(airf_agent::host::gather());
    let set = match session.evidence_set(&started, &host) {
        Ok(s) => s,
        Err(e) => return session.usage(e),
    };
    let mut options = TriageOptions {
        environment: args.environment,
        shadow: !args.no_shadow,
        ..TriageOptions::default()
    };
    options.budgets.time_seconds = args.time_budget;
    options.budgets.file_bytes = args.file_budget;
    options.budgets.total_bytes = args.total_budget;
    options.budgets.exe_bytes = args.exe_budget;
    let progress = session.progress_wanted();
    let say = |what: &str| {
        if progress {
            eprintln!("airf-agent: triage: {what}");
        }
    };
    let outcome = run_triage(&set, &host, session.case(), &options, &say);
    if let Some(m) = &outcome.manifest {
        for line in summary(
            &m.headline,
            m.copied_files.len(),
            m.skipped.len(),
            m.unreadable.len(),
        ) {
            eprintln!("airf-agent: triage: {line}");
        }
    }
    say_outcome(&outcome.report);
    set.remove_empty_folders();
    session.finish(
        Some(&set),
        vec![outcome.report],
        Vec::new(),
        Some(&started.signal),
    )
}

/// The headline in plain words, a line each.
fn summary(h: &Headline, files: usize, skipped: usize, unreadable: usize) -> Vec<String> {
    let mut out = vec![format!("{} processes", h.processes)];
    if h.deleted_exe_processes.is_empty() {
        out.push("no process runs a deleted or memfd executable".into());
    }
    for p in &h.deleted_exe_processes {
        out.push(format!(
            "SUSPECT: pid {} ({}) runs {} (recovered into the evidence folder)",
            p.pid, p.name, p.exe
        ));
    }
    let listening: Vec<String> = h
        .listening
        .iter()
        .map(|l| format!("{} {}", l.protocol, l.local))
        .collect();
    out.push(format!(
        "listening: {}",
        if listening.is_empty() {
            "nothing".into()
        } else {
            listening.join(", ")
        }
    ));
    let uid0: Vec<String> = h.uid0_accounts.iter().map(ToString::to_string).collect();
    out.push(format!("UID 0 accounts: {}", uid0.join(", ")));
    for m in &h.module_mismatches {
        out.push(format!("SUSPECT: module {m}"));
    }
    out.push(format!(
        "{files} files copied; {skipped} items skipped by a budget, {unreadable} unreadable (listed in triage.manifest.json)"
    ));
    out
}
