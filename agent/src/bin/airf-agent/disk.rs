//! `airf-agent disk`: acquire block devices or image files.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use airf_agent::acquire::{acquire_disk, disk_object_stem};
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
        return session.fail("--to - takes exactly one source (stdout holds one image)".into());
    }
    let started = match session.start() {
        Ok(s) => s,
        Err(e) => return session.fail(e),
    };
    // Open every source first: a typo should fail before anything is uploaded.
    let mut disks = Vec::new();
    for path in &args.sources {
        match block_device::open(path) {
            Ok(d) => disks.push(d),
            Err(e) => return session.fail(e.to_string()),
        }
    }
    let host = started.rt.block_on(airf_agent::host::gather());
    let set = session.evidence_set(&started, &host);
    let settings = session.acquire_settings(started.frame_size);

    let mut reports = Vec::new();
    let mut stems: Vec<String> = Vec::new();
    for disk in disks {
        if started.control.cancel.load(Ordering::SeqCst) {
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
        let r = acquire_disk(disk, &stem, &set, &host, &settings, &started.control);
        say_outcome(&r);
        reports.push(r);
    }
    session.finish(Some(&set), reports, Vec::new(), Some(&started.signal))
}
