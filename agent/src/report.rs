//! The one JSON object printed on stdout at the end of every command ([`RunReport`], defined in
//! `airf-evidence`), the exit status it implies, and the summary people read instead when
//! stdout is a terminal ([`human_summary`]).

pub use airf_evidence::report::{RunReport, SourceReport, Status};

/// Exit statuses, documented in README.md.
pub mod exit {
    /// Every source acquired completely (or evidence verified intact).
    pub const OK: i32 = 0;
    /// Failed: no trustworthy evidence from at least one source.
    pub const FAILED: i32 = 1;
    /// Bad command line.
    pub const USAGE: i32 = 2;
    /// Evidence stored and whole, but some source ranges were unreadable (zero-filled, listed).
    pub const READ_ERRORS: i32 = 3;
    /// `verify`: the evidence does not match its manifest.
    pub const NOT_INTACT: i32 = 4;
    /// A memory image was stored, but the running kernel's banner is not in it: the source lost
    /// memory (e.g. LiME zero-filled ranges). Stored and labelled, never evidence of the kernel.
    pub const HOLLOW: i32 = 5;
    /// Interrupted by SIGINT.
    pub const SIGINT: i32 = 130;
    /// Interrupted by SIGTERM.
    pub const SIGTERM: i32 = 143;
}

/// Builds the overall report: the worst per-source status wins.
///
/// A signal changes nothing that was already stored: a source whose manifest was stored is
/// complete, whenever the signal came. The signal shows where it stopped something: a source
/// interrupted or never started (which the caller reports as `Interrupted`), or a run that
/// stopped before any source.
pub fn run_report(
    command: &str,
    case: &str,
    folder: &str,
    sources: Vec<SourceReport>,
    errors: Vec<String>,
    secs: f64,
    signal: Option<i32>,
) -> RunReport {
    let nothing = if signal.is_some() {
        Status::Interrupted
    } else {
        Status::Failed
    };
    let mut status = sources.iter().map(|s| s.status).max().unwrap_or(nothing);
    if !errors.is_empty() && status < Status::Failed {
        status = Status::Failed;
    }
    let exit_code = match (status, signal) {
        (Status::Interrupted, Some(nix::libc::SIGTERM)) => exit::SIGTERM,
        (Status::Interrupted, _) => exit::SIGINT,
        (Status::Failed | Status::Unknown, _) => exit::FAILED,
        (Status::CompletedWithReadErrors, _) => exit::READ_ERRORS,
        (Status::Hollow, _) => exit::HOLLOW,
        (Status::Complete, _) => exit::OK,
    };
    RunReport {
        command: command.into(),
        status,
        exit_code,
        case: case.into(),
        evidence_folder: folder.into(),
        sources,
        errors,
        duration_seconds: secs,
        extra: airf_evidence::Extra::new(),
    }
}

/// A few lines for a person at a terminal.
pub fn human_summary(report: &RunReport) -> String {
    let mut out = String::new();
    for s in &report.sources {
        let what = match s.status {
            Status::Complete => "acquired completely".to_owned(),
            Status::CompletedWithReadErrors => format!(
                "completed with read errors: {} in {} range(s) unreadable, zero-filled and listed in the manifest",
                crate::progress::human_bytes(s.unreadable_bytes),
                s.unreadable_ranges
            ),
            Status::Hollow => format!(
                "HOLLOW, do not rely on it: {}",
                s.error
                    .as_deref()
                    .unwrap_or("memory is missing from the image")
            ),
            Status::Failed => {
                format!("FAILED: {}", s.error.as_deref().unwrap_or("unknown error"))
            }
            Status::Interrupted => "INTERRUPTED: nothing stored claims to be complete".to_owned(),
            Status::Unknown => "status unknown to this agent".to_owned(),
        };
        out.push_str(&format!("{}: {what}\n", s.source));
        if let Some(img) = &s.image {
            out.push_str(&format!(
                "  image    {} ({} from {}, {:.0} MB/s)\n",
                img.location,
                crate::progress::human_bytes(s.compressed_size),
                crate::progress::human_bytes(s.raw_size),
                s.throughput_mb_s
            ));
        }
        if let Some(m) = &s.manifest {
            out.push_str(&format!("  manifest {}\n", m.location));
            out.push_str(&format!(
                "  check it with: airf-agent verify {}\n",
                m.location
            ));
        }
        if let Some(h) = &s.raw_sha256 {
            out.push_str(&format!("  sha256   {h} (raw)\n"));
        }
        if let Some(c) = &s.cleanup {
            out.push_str(&format!("  cleanup  {}\n", c.detail));
        }
        for w in &s.warnings {
            out.push_str(&format!("  warning  {w}\n"));
        }
    }
    for e in &report.errors {
        out.push_str(&format!("error: {e}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(status: Status) -> SourceReport {
        SourceReport {
            source: "/dev/sdb".into(),
            status,
            image: None,
            manifest: None,
            manifest_inline: None,
            raw_size: 0,
            raw_sha256: None,
            compressed_size: 0,
            compressed_sha256: None,
            unreadable_bytes: 512,
            unreadable_ranges: 1,
            duration_seconds: 1.0,
            throughput_mb_s: 0.0,
            error: None,
            cleanup: None,
            warnings: Vec::new(),
            symbol_table: None,
            triage: None,
            extra: airf_evidence::Extra::new(),
        }
    }

    fn exit_of(statuses: &[Status], errors: &[&str], signal: Option<i32>) -> (Status, i32) {
        let sources = statuses.iter().copied().map(source).collect();
        let errors = errors.iter().map(|e| (*e).to_owned()).collect();
        let r = run_report("disk", "IR-1", "f", sources, errors, 1.0, signal);
        (r.status, r.exit_code)
    }

    #[test]
    fn the_worst_outcome_sets_the_exit_status() {
        use Status::*;
        assert_eq!(exit_of(&[Complete], &[], None), (Complete, exit::OK));
        assert_eq!(
            exit_of(&[Complete, CompletedWithReadErrors], &[], None),
            (CompletedWithReadErrors, exit::READ_ERRORS)
        );
        assert_eq!(
            exit_of(&[Hollow, Complete], &[], None),
            (Hollow, exit::HOLLOW)
        );
        assert_eq!(exit_of(&[Complete], &["x"], None), (Failed, exit::FAILED));
        assert_eq!(exit_of(&[], &[], None), (Failed, exit::FAILED));
        assert_eq!(
            exit_of(&[Complete, Interrupted], &[], Some(nix::libc::SIGTERM)),
            (Interrupted, exit::SIGTERM)
        );
        assert_eq!(
            exit_of(&[Interrupted], &[], Some(nix::libc::SIGINT)),
            (Interrupted, exit::SIGINT)
        );
        assert_eq!(
            exit_of(&[], &[], Some(nix::libc::SIGTERM)),
            (Interrupted, exit::SIGTERM)
        );
    }

    /// A signal that came after every manifest was stored stops nothing: the report, the exit
    /// status and the stored evidence agree that it is complete.
    #[test]
    fn a_late_signal_leaves_stored_evidence_complete() {
        use Status::*;
        for sig in [nix::libc::SIGTERM, nix::libc::SIGINT] {
            assert_eq!(exit_of(&[Complete], &[], Some(sig)), (Complete, exit::OK));
            assert_eq!(
                exit_of(&[CompletedWithReadErrors], &[], Some(sig)),
                (CompletedWithReadErrors, exit::READ_ERRORS)
            );
        }
    }

    #[test]
    fn the_summary_says_read_errors_in_words() {
        let r = run_report(
            "disk",
            "IR-1",
            "f",
            vec![source(Status::CompletedWithReadErrors)],
            Vec::new(),
            1.0,
            None,
        );
        let text = human_summary(&r);
        assert!(
            text.contains("/dev/sdb: completed with read errors"),
            "{text}"
        );
    }
}
