//! `airf-agent disk`: acquire block devices or image files.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use airf_agent::acquire::{acquire_disk, disk_object_stem};
use airf_agent::report::{SourceReport, Status};
use airf_agent::source::block_device;
use clap::Args;

use crate::common::{AcquireArgs, Session, say_outcome};

#[derive(Debug, Args)]
pub struct DiskArgs {
    /// Block devices (e.g. /dev/nvme1n1) or disk image files to acquire.
    #[arg(required = true, value_name = "DEVICE|FILE")]
    pub sources: Vec<PathBuf>,
    #[command(flatten)]
    pub acquire: AcquireArgs,
}

pub fn run(args: DiskArgs) -> i32 {
    let session = Session::new("disk", &args.acquire);
    if session.to_stdout() && args.sources.len() > 1 {
        return session.usage("--to - takes exactly one source (stdout holds one image)".into());
    }
    let started = match session.start() {
        Ok(s) => s,
        Err(e) => return session.refuse(e),
    };
    // Open every source first: a typo should fail before anything is uploaded.
    let mut disks: Vec<block_device::Disk> = Vec::new();
    for path in &args.sources {
        let disk = match block_device::open(path) {
            Ok(d) => d,
            Err(e) => return session.fail(e.to_string()),
        };
        // The same device twice (or a link to it) would be read twice and stored twice.
        if let Some(first) = disks
            .iter()
            .find(|d| d.facts.canonical_path == disk.facts.canonical_path)
        {
            return session.usage(format!(
                "{} and {} are the same source ({}): give each source once",
                first.facts.path.display(),
                path.display(),
                disk.facts.canonical_path.display()
            ));
        }
        disks.push(disk);
    }
    let host = started.rt.block_on(airf_agent::host::gather());
    let set = match session.evidence_set(&started, &host) {
        Ok(s) => s,
        Err(e) => return session.usage(e),
    };
    let settings = session.acquire_settings(started.frame_size);

    let mut reports = Vec::new();
    let mut stems: Vec<String> = Vec::new();
    for disk in disks {
        if started.control.cancel.load(Ordering::SeqCst) {
            reports.push(not_started(&disk));
            continue;
        }
        let mut stem = disk_object_stem(&disk);
        let base = stem.clone();
        let mut n = 2;
        while stems.contains(&stem) {
            stem = format!("{base}-{n}");
            n += 1;
        }
        stems.push(stem.clone());
        let r = acquire_disk(disk, &stem, &set, &host, &settings, &started.control);
        say_outcome(&r);
        reports.push(r);
    }
    set.remove_empty_folders();
    session.finish(Some(&set), reports, Vec::new(), Some(&started.signal))
}

/// The report of a source a signal kept from starting: nothing of it was stored.
fn not_started(disk: &block_device::Disk) -> SourceReport {
    let mut r = SourceReport::failed(disk.facts.path.display().to_string());
    r.status = Status::Interrupted;
    r.error = Some("not started: the agent was interrupted before this source".into());
    r
}
