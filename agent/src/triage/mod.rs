//! `airf-agent triage`: the volatile state of a running host, in seconds, before memory and
//! disks: processes (executables hashed, deleted and memfd ones recovered), sockets with their
//! owners, open files, mounts, kernel modules from two sources, logins and accounts, and the
//! configuration, persistence and log files an investigator reads first.
//!
//! Everything goes to the evidence folder through the same [`EvidenceSet`] as images: one
//! JSON-lines object per category, `triage.files.tar.zst`, one object per recovered executable
//! and the [`TriageManifest`] last. Nothing is written to the suspect's disks. Unreadable items
//! are listed with their errno; a time budget and size budgets bound the run, and what they
//! left out is listed too.

pub mod files;
pub mod log;
pub mod modules;
pub mod network;
pub mod processes;
pub mod records;
pub mod users;

use std::path::Path;
use std::time::{Duration, Instant};

use airf_evidence::report::{SourceReport, Status};
use airf_evidence::triage::{
    Budgets, Headline, PidNamespace, RecoveredExecutable, SuspectProcess, Text, TriageManifest,
    TriageObject, names,
};
use serde::Serialize;

use self::log::{Deadline, Log};
use self::records::Records;
use crate::destination::{EvidenceSet, PartSizing};
use crate::hash::Sha256;
use crate::host::HostFacts;

/// What to collect and within which limits.
#[derive(Debug, Clone)]
pub struct TriageOptions {
    pub budgets: Budgets,
    /// Keep environment values (they hold secrets; by default only their size).
    pub environment: bool,
    /// Copy `/etc/shadow` and `/etc/gshadow`.
    pub shadow: bool,
    /// The filesystem root files are collected under (`/`; tests use a folder).
    pub root: std::path::PathBuf,
}

impl Default for TriageOptions {
    fn default() -> Self {
        Self {
            budgets: Budgets {
                time_seconds: 60,
                file_bytes: 16 << 20,
                total_bytes: 512 << 20,
                exe_bytes: 256 << 20,
                cmdline_bytes: 64 << 10,
            },
            environment: false,
            shadow: true,
            root: "/".into(),
        }
    }
}

/// One mount, from `/proc/self/mountinfo`.
#[derive(Debug, Clone, Serialize)]
struct MountRecord {
    mount_point: Text,
    source: Text,
    fstype: Text,
    options: Text,
    root: Text,
}

fn mounts(log: &mut Log) -> Vec<MountRecord> {
    match std::fs::read("/proc/self/mountinfo") {
        Ok(b) => b
            .split(|&c| c == b'\n')
            .filter_map(parse_mountinfo_line)
            .collect(),
        Err(e) => {
            log.unreadable("/proc/self/mountinfo", &e);
            Vec::new()
        }
    }
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while let Some(&b) = field.get(i) {
        if b == b'\\' {
            let oct = field.get(i + 1..i + 4).and_then(|d| {
                std::str::from_utf8(d)
                    .ok()
                    .and_then(|s| u8::from_str_radix(s, 8).ok())
            });
            if let Some(v) = oct {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    out
}

/// `id parent major:minor root mount_point options [optional...] - fstype source super_options`.
fn parse_mountinfo_line(line: &[u8]) -> Option<MountRecord> {
    let f: Vec<&[u8]> = line.split(|&c| c == b' ').collect();
    let dash = f.iter().position(|x| *x == b"-")?;
    Some(MountRecord {
        root: Text(unescape(f.get(3)?)),
        mount_point: Text(unescape(f.get(4)?)),
        options: Text(f.get(5)?.to_vec()),
        fstype: Text(f.get(dash + 1)?.to_vec()),
        source: Text(unescape(f.get(dash + 2)?)),
    })
}

/// `/proc/self/ns/pid` in the initial (host) pid namespace: PROC_PID_INIT_INO = 0xEFFFFFFC.
const INITIAL_PID_NAMESPACE: &str = "pid:[4026531836]";

fn pid_namespace() -> PidNamespace {
    let id = std::fs::read_link("/proc/self/ns/pid")
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let nspid = std::fs::read("/proc/self/status")
        .map(|b| processes::parse_status(&b).nspid)
        .unwrap_or_default();
    // The initial pid namespace has a fixed inode (PROC_PID_INIT_INO, include/linux/proc_ns.h);
    // NSpid alone misses a container that mounted its own /proc, which shows one level only.
    let nested = nspid.len() > 1 || (!id.is_empty() && id != INITIAL_PID_NAMESPACE);
    PidNamespace {
        nested,
        id,
        note: nested.then(|| {
            "the agent runs in a nested pid namespace (a container): only that namespace's processes were listed; run it on the host for all of them".to_owned()
        }),
    }
}

/// The kernel's taint, as one record.
fn kernel_taint(log: &mut Log) -> Option<modules::KernelTaint> {
    match std::fs::read_to_string("/proc/sys/kernel/tainted") {
        Ok(t) => {
            let tainted = t.trim().parse().unwrap_or(0);
            Some(modules::KernelTaint {
                tainted,
                flags: modules::decode_taint(tainted),
            })
        }
        Err(e) => {
            log.unreadable("/proc/sys/kernel/tainted", &e);
            None
        }
    }
}

/// What a triage run stored.
#[derive(Debug)]
pub struct TriageOutcome {
    pub report: SourceReport,
    pub manifest: Option<TriageManifest>,
}

/// Progress lines for a person (the bin prints them; automation ignores them).
pub type Say<'a> = &'a dyn Fn(&str);

/// Runs every collector and stores the results in `set`. A failure to store is fatal (the run
/// reports failed, and no manifest claims a whole set); anything unreadable on the host is not.
pub fn run_triage(
    set: &EvidenceSet,
    host: &HostFacts,
    case: &str,
    options: &TriageOptions,
    say: Say<'_>,
) -> TriageOutcome {
    let clock = Instant::now();
    let started_at = time::OffsetDateTime::now_utc();
    let deadline = Deadline::new(Duration::from_secs(options.budgets.time_seconds));
    let mut log = Log::default();
    let mut report = SourceReport::failed("triage".into());
    let mut objects: Vec<TriageObject> = Vec::new();
    let mut recovered: Vec<RecoveredExecutable> = Vec::new();
    let mut store_errors: Vec<String> = Vec::new();

    say("processes, open files and executables");
    let boot_time = procfs::boot_time_secs()
        .ok()
        .and_then(|b| i64::try_from(b).ok());
    let ticks = procfs::ticks_per_second();
    let procs = processes::collect(
        &options.root.join("proc"),
        processes::ProcessOptions {
            cmdline_bytes: options.budgets.cmdline_bytes,
            exe_bytes: options.budgets.exe_bytes,
            environment: options.environment,
        },
        boot_time,
        ticks,
        &deadline,
        &mut log,
        &mut |r, _log| {
            // Stored at once: memory holds one executable at a time.
            if let Some(known) = recovered.iter_mut().find(|k| k.sha256 == r.sha256) {
                known.pids.push(r.pid);
                return;
            }
            let object = names::recovered_exe(&r.sha256);
            let size = r.bytes.len() as u64;
            match set.put_file(&object, r.bytes, "application/octet-stream") {
                Ok(_) => {
                    objects.push(TriageObject {
                        name: object.clone(),
                        category: "executable".into(),
                        records: None,
                        size,
                        sha256: r.sha256.clone(),
                    });
                    recovered.push(RecoveredExecutable {
                        pids: vec![r.pid],
                        exe: r.exe,
                        object,
                        size,
                        sha256: r.sha256,
                    });
                }
                Err(e) => store_errors.push(format!("storing {object}: {e}")),
            }
        },
    );
    say("sockets, routes, interfaces, neighbours");
    let net = network::collect(&procs.socket_owners, &mut log);
    say("kernel modules, mounts, accounts and logins");
    let proc_modules = std::fs::read_to_string("/proc/modules").ok();
    let modules = modules::collect(proc_modules.as_deref(), Path::new("/sys/module"), &mut log);
    let mounts = mounts(&mut log);
    let users = users::collect(&options.root, options.budgets.file_bytes, &mut log);
    let taint = kernel_taint(&mut log);

    let headline = Headline {
        processes: procs.records.len() as u64,
        deleted_exe_processes: procs
            .records
            .iter()
            .filter(|p| p.exe_deleted || p.exe_memfd)
            .map(|p| SuspectProcess {
                pid: p.pid,
                name: p.name.clone(),
                exe: p.exe.clone().unwrap_or_default(),
            })
            .collect(),
        listening: network::listeners(&net.sockets),
        uid0_accounts: users
            .accounts
            .iter()
            .filter(|a| a.uid == 0)
            .map(|a| a.name.clone())
            .collect(),
        module_mismatches: modules::mismatches(&modules),
    };

    // The records, one object per category.
    let mut categories: Vec<Records> = Vec::new();
    let mut add = |name: &'static str, fill: &mut dyn FnMut(&mut Records)| {
        let mut r = Records::new(name);
        fill(&mut r);
        categories.push(r);
    };
    add("processes", &mut |r| {
        procs.records.iter().for_each(|x| r.push(x))
    });
    add("open_files", &mut |r| {
        procs.open_files.iter().for_each(|x| r.push(x))
    });
    add("sockets", &mut |r| {
        net.sockets.iter().for_each(|x| r.push(x))
    });
    add("unix_sockets", &mut |r| {
        net.unix.iter().for_each(|x| r.push(x))
    });
    add("routes", &mut |r| net.routes.iter().for_each(|x| r.push(x)));
    add("interfaces", &mut |r| {
        net.interfaces.iter().for_each(|x| r.push(x))
    });
    add("neighbours", &mut |r| {
        net.neighbours.iter().for_each(|x| r.push(x))
    });
    add("modules", &mut |r| modules.iter().for_each(|x| r.push(x)));
    add("kernel", &mut |r| taint.iter().for_each(|x| r.push(x)));
    add("mounts", &mut |r| mounts.iter().for_each(|x| r.push(x)));
    add("accounts", &mut |r| {
        users.accounts.iter().for_each(|x| r.push(x))
    });
    add("logins", &mut |r| {
        users.logins.iter().for_each(|x| r.push(x))
    });
    for r in categories {
        let name = names::records(r.category());
        match r.store(set) {
            Ok(o) => objects.push(o),
            Err(e) => store_errors.push(format!("storing {name}: {e}")),
        }
    }

    say("configuration, persistence and log files");
    let wanted = files::wanted(&users.accounts, options.shadow);
    let sink = set.open_image(
        names::FILES,
        &PartSizing {
            size_hint: Some(options.budgets.total_bytes),
            frame_size: 2 << 20,
            requested: None,
        },
    );
    let archive = match sink {
        Ok(sink) => files::archive(
            &options.root,
            &wanted,
            files::FileBudgets {
                file_bytes: options.budgets.file_bytes,
                total_bytes: options.budgets.total_bytes,
            },
            sink,
            &deadline,
            &mut log,
        )
        .map_err(|e| e.to_string()),
        Err(e) => Err(format!("storing {}: {e}", names::FILES)),
    };
    let copied_files = match archive {
        Ok(a) => {
            objects.push(TriageObject {
                name: names::FILES.into(),
                category: "files".into(),
                records: Some(a.files.len() as u64),
                size: a.size,
                sha256: a.sha256.clone(),
            });
            report.image = Some(a.stored);
            a.files
        }
        Err(e) => {
            store_errors.push(e);
            Vec::new()
        }
    };

    let (skipped, unreadable) = log.finish();
    let finished_at = time::OffsetDateTime::now_utc();
    let manifest = TriageManifest {
        schema_version: airf_evidence::triage::SCHEMA_VERSION,
        kind: "triage".into(),
        tool: crate::manifest::this_tool(),
        case: case.to_owned(),
        host: host.clone(),
        started_at,
        finished_at,
        duration_seconds: clock.elapsed().as_secs_f64(),
        pid_namespace: pid_namespace(),
        budgets: options.budgets.clone(),
        objects,
        recovered_executables: recovered,
        copied_files,
        skipped,
        unreadable,
        headline,
        extra: airf_evidence::Extra::new(),
    };
    report.duration_seconds = clock.elapsed().as_secs_f64();
    report.raw_size = manifest.objects.iter().map(|o| o.size).sum();
    report.compressed_size = report.raw_size;
    if !store_errors.is_empty() {
        // No manifest: a set with an object missing must not look whole.
        report.error = Some(store_errors.join("; "));
        return TriageOutcome {
            report,
            manifest: None,
        };
    }
    let bytes = match serde_json::to_vec_pretty(&manifest) {
        Ok(b) => b,
        Err(e) => {
            report.error = Some(format!("writing the triage manifest: {e}"));
            return TriageOutcome {
                report,
                manifest: None,
            };
        }
    };
    let sha = hex::encode(Sha256::digest(&bytes));
    match set.put_file(names::MANIFEST, bytes, "application/json") {
        Ok(stored) => {
            report.manifest = stored;
            report.status = Status::Complete;
            report.compressed_sha256 = Some(sha);
            if manifest.pid_namespace.nested {
                report
                    .warnings
                    .push(manifest.pid_namespace.note.clone().unwrap_or_default());
            }
            if manifest
                .skipped
                .iter()
                .any(|s| s.reason.contains("time budget"))
            {
                report.warnings.push(format!(
                    "the time budget of {} s ran out: the manifest lists what was left out",
                    options.budgets.time_seconds
                ));
            }
            report.triage = Some(manifest.headline.clone());
        }
        Err(e) => report.error = Some(format!("storing {}: {e}", names::MANIFEST)),
    }
    TriageOutcome {
        report,
        manifest: Some(manifest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn mountinfo_lines() {
        let m = parse_mountinfo_line(b"36 35 98:0 /mnt1 /mnt/my\\040disk rw,noatime master:1 - ext3 /dev/root rw,errors=continue").unwrap();
        assert_eq!(m.mount_point, Text::from("/mnt/my disk"));
        assert_eq!(m.fstype, Text::from("ext3"));
        assert_eq!(m.source, Text::from("/dev/root"));
        assert!(parse_mountinfo_line(b"1 2 3").is_none());
    }

    fn local_set(dir: &Path) -> EvidenceSet {
        EvidenceSet::new(
            crate::destination::DestSpec::Dir(dir.to_path_buf()),
            None,
            crate::destination::UploadSettings {
                concurrency: 1,
                sse_kms_key_id: None,
                abort_deadline: Duration::from_secs(1),
            },
            "T-1",
            "host",
            time::OffsetDateTime::now_utc(),
        )
        .unwrap()
    }

    /// This machine, into a folder: every listed object is there with its size and hash, and
    /// `verify` says so; a changed one fails verify by name.
    #[test]
    fn a_run_stores_what_its_manifest_lists() {
        let out = tempfile::tempdir().unwrap();
        let set = local_set(out.path());
        let o = run_triage(
            &set,
            &HostFacts::default(),
            "T-1",
            &TriageOptions::default(),
            &|_| {},
        );
        assert_eq!(o.report.status, Status::Complete, "{:?}", o.report.error);
        let m = o.manifest.unwrap();
        assert!(m.headline.processes > 0);
        assert!(m.objects.iter().any(|x| x.name == names::FILES));
        let folder = Path::new(&set.folder);
        for x in &m.objects {
            let b = std::fs::read(folder.join(&x.name)).unwrap();
            assert_eq!(hex::encode(Sha256::digest(&b)), x.sha256, "{}", x.name);
        }
        let loc = crate::verify::Location::File(folder.join(names::MANIFEST));
        assert_eq!(
            crate::verify::verify(&loc, None).status,
            crate::verify::Verdict::Intact
        );
        std::fs::write(folder.join("triage.mounts.jsonl"), b"{}\n").unwrap();
        let r = crate::verify::verify(&loc, None);
        assert_eq!(r.status, crate::verify::Verdict::NotIntact);
        assert!(r.message.contains("triage.mounts.jsonl"), "{}", r.message);
    }

    /// A spent time budget leaves the rest out, listed, and says so; the run is still whole.
    #[test]
    fn a_spent_time_budget_is_listed_and_warned() {
        let out = tempfile::tempdir().unwrap();
        let set = local_set(out.path());
        let mut options = TriageOptions::default();
        options.budgets.time_seconds = 0;
        let o = run_triage(&set, &HostFacts::default(), "T-1", &options, &|_| {});
        assert_eq!(o.report.status, Status::Complete);
        let m = o.manifest.unwrap();
        assert!(
            m.skipped.iter().any(|s| s.reason.contains("time budget")),
            "{:?}",
            m.skipped
        );
        assert!(o.report.warnings.iter().any(|w| w.contains("time budget")));
    }

    proptest! {
        #[test]
        fn the_mountinfo_parser_never_panics(line in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_mountinfo_line(&line);
            let _ = unescape(&line);
        }
    }
}
