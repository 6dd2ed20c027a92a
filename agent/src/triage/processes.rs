//! Processes and their open files, read from `/proc` directly: names, command lines and link
//! targets are kept as bytes ([`Text`]), and an executable is hashed through
//! `/proc/<pid>/exe`, which still reads a binary whose file was deleted or never existed
//! (memfd).

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use airf_evidence::triage::Text;
use serde::Serialize;

use super::log::{Deadline, Log};
use crate::hash::Sha256;

/// Namespaces recorded per process.
const NAMESPACES: &[&str] = &["cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"];

/// One process.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessRecord {
    pub pid: u32,
    pub ppid: u32,
    /// `comm`.
    pub name: Text,
    /// One letter, as in `ps` (`R`, `S`, `Z`, ...).
    pub state: String,
    /// Real, effective, saved and filesystem uid.
    pub uids: Vec<u32>,
    pub gids: Vec<u32>,
    pub threads: u64,
    /// Clock ticks after boot (`/proc/<pid>/stat` field 22).
    pub start_ticks: u64,
    /// UTC, RFC 3339 (boot time + start ticks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    pub cmdline: Vec<Text>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cmdline_truncated: bool,
    /// Bytes of the environment (its values hold secrets: kept only with --environment).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<Vec<Text>>,
    /// `/proc/<pid>/exe` (absent for kernel threads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exe: Option<Text>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub exe_deleted: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub exe_memfd: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exe_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exe_sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cwd: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root: Option<Text>,
    /// e.g. `{"pid": "pid:[4026531836]"}`.
    pub namespaces: BTreeMap<String, String>,
    /// The pid in each nested pid namespace (`NSpid`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nspid: Vec<u32>,
    pub cgroup: Vec<Text>,
    /// A 64-hex container id found in the cgroup path (docker, containerd, cri-o).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
}

/// One open file descriptor.
#[derive(Debug, Clone, Serialize)]
pub struct OpenFile {
    pub pid: u32,
    pub fd: u32,
    pub target: Text,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket_inode: Option<u64>,
}

/// An executable to recover: a deleted or memfd one, with its bytes.
#[derive(Debug)]
pub struct Recovered {
    pub pid: u32,
    pub exe: Text,
    pub sha256: String,
    pub bytes: Vec<u8>,
}

/// Fields of `/proc/<pid>/stat` after the name.
#[derive(Debug, PartialEq, Eq)]
pub struct Stat {
    pub state: String,
    pub ppid: u32,
    pub threads: u64,
    pub start_ticks: u64,
}

/// Parses `/proc/<pid>/stat`. The name may hold spaces and parentheses: fields are counted
/// from the last `)`.
pub fn parse_stat(text: &[u8]) -> Option<Stat> {
    let close = text.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(text.get(close + 1..)?).ok()?;
    let f: Vec<&str> = rest.split_ascii_whitespace().collect();
    // Field 3 (state) is f[0]; field N is f[N - 3].
    Some(Stat {
        state: (*f.first()?).to_owned(),
        ppid: f.get(1)?.parse().ok()?,
        threads: f.get(17)?.parse().ok()?,
        start_ticks: f.get(19)?.parse().ok()?,
    })
}

/// Fields of `/proc/<pid>/status`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Status {
    pub uids: Vec<u32>,
    pub gids: Vec<u32>,
    pub nspid: Vec<u32>,
}

fn numbers(v: &str) -> Vec<u32> {
    v.split_ascii_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect()
}

/// Parses `/proc/<pid>/status` (lines `Key:\tvalue`; unknown keys and bad lines ignored).
pub fn parse_status(text: &[u8]) -> Status {
    let mut s = Status::default();
    for line in text.split(|&b| b == b'\n') {
        let Ok(line) = std::str::from_utf8(line) else {
            continue;
        };
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        match k {
            "Uid" => s.uids = numbers(v),
            "Gid" => s.gids = numbers(v),
            "NSpid" => s.nspid = numbers(v),
            _ => {}
        }
    }
    s
}

/// A container id: the last run of exactly 64 hex digits in a cgroup path.
pub fn container_id(cgroup: &[u8]) -> Option<String> {
    let mut found = None;
    let mut i = 0;
    while i < cgroup.len() {
        let run = cgroup
            .get(i..)
            .unwrap_or_default()
            .iter()
            .take_while(|b| b.is_ascii_hexdigit())
            .count();
        if run == 64 {
            found = cgroup
                .get(i..i + 64)
                .map(|h| String::from_utf8_lossy(h).to_ascii_lowercase());
        }
        i += run.max(1);
    }
    found
}

/// Splits a NUL-separated list (cmdline, environ), keeping at most `max` bytes.
fn split_nul(bytes: &[u8]) -> Vec<Text> {
    let trimmed = bytes.strip_suffix(&[0]).unwrap_or(bytes);
    if trimmed.is_empty() {
        return Vec::new();
    }
    trimmed
        .split(|&b| b == 0)
        .map(|p| Text(p.to_vec()))
        .collect()
}

fn read_bounded(path: &Path, max: u64) -> std::io::Result<(Vec<u8>, bool)> {
    let mut out = Vec::new();
    std::fs::File::open(path)?
        .take(max + 1)
        .read_to_end(&mut out)?;
    let truncated = out.len() as u64 > max;
    out.truncate(usize::try_from(max).unwrap_or(usize::MAX));
    Ok((out, truncated))
}

fn link(path: &Path) -> std::io::Result<Text> {
    std::fs::read_link(path).map(|p| Text(p.as_os_str().as_bytes().to_vec()))
}

/// What the process walk is told.
#[derive(Debug, Clone, Copy)]
pub struct ProcessOptions {
    pub cmdline_bytes: u64,
    pub exe_bytes: u64,
    pub environment: bool,
}

/// What the process walk found.
#[derive(Debug, Default)]
pub struct Processes {
    pub records: Vec<ProcessRecord>,
    pub open_files: Vec<OpenFile>,
    /// Socket inode → pids holding it.
    pub socket_owners: HashMap<u64, Vec<u32>>,
}

/// The hash of one executable, by (device, inode, size, mtime): many processes share a binary.
type ExeKey = (u64, u64, u64, i64);

/// Walks `/proc`: every process, its open files, and its executable's SHA-256; a deleted or
/// memfd executable is handed to `recovered` with its bytes (at most `exe_bytes`).
pub fn collect(
    proc_root: &Path,
    options: ProcessOptions,
    boot_time: Option<i64>,
    ticks_per_second: u64,
    deadline: &Deadline,
    log: &mut Log,
    recovered: &mut dyn FnMut(Recovered, &mut Log),
) -> Processes {
    let mut out = Processes::default();
    let mut pids: Vec<u32> = match std::fs::read_dir(proc_root) {
        Ok(d) => d
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect(),
        Err(e) => {
            log.unreadable(proc_root.as_os_str().as_bytes().to_vec(), &e);
            return out;
        }
    };
    pids.sort_unstable();
    let mut hashes: HashMap<ExeKey, (u64, String)> = HashMap::new();
    for pid in pids {
        if deadline.expired() {
            log.skipped(format!("pid {pid} and after").as_str(), deadline.reason());
            break;
        }
        let dir = proc_root.join(pid.to_string());
        if let Some(r) = one_process(
            &dir,
            pid,
            options,
            boot_time,
            ticks_per_second,
            log,
            &mut hashes,
            recovered,
        ) {
            out.records.push(r);
        }
        open_files(&dir, pid, &mut out, log);
    }
    out
}

fn vanished(e: &std::io::Error) -> bool {
    let code = e.raw_os_error();
    code == Some(nix::errno::Errno::ENOENT as i32) || code == Some(nix::errno::Errno::ESRCH as i32)
}

#[allow(clippy::too_many_arguments)]
fn one_process(
    dir: &Path,
    pid: u32,
    options: ProcessOptions,
    boot_time: Option<i64>,
    ticks_per_second: u64,
    log: &mut Log,
    hashes: &mut HashMap<ExeKey, (u64, String)>,
    recovered: &mut dyn FnMut(Recovered, &mut Log),
) -> Option<ProcessRecord> {
    let item = dir.as_os_str().as_bytes().to_vec();
    let stat = match std::fs::read(dir.join("stat")) {
        Ok(b) => match parse_stat(&b) {
            Some(s) => s,
            None => {
                log.unreadable_with(item, None, "unparsable stat".into());
                return None;
            }
        },
        Err(e) => {
            let why = if vanished(&e) {
                "the process exited during collection".to_owned()
            } else {
                e.to_string()
            };
            log.unreadable_with(item, super::log::errno_name(&e), why);
            return None;
        }
    };
    let status = std::fs::read(dir.join("status"))
        .map(|b| parse_status(&b))
        .unwrap_or_default();
    let name = std::fs::read(dir.join("comm"))
        .map(|mut b| {
            if b.last() == Some(&b'\n') {
                b.pop();
            }
            Text(b)
        })
        .unwrap_or_default();
    let (cmdline, cmdline_truncated) =
        match read_bounded(&dir.join("cmdline"), options.cmdline_bytes) {
            Ok((b, t)) => (split_nul(&b), t),
            Err(e) => {
                log.unreadable(dir.join("cmdline").as_os_str().as_bytes().to_vec(), &e);
                (Vec::new(), false)
            }
        };
    let (environment_bytes, environment) = match std::fs::read(dir.join("environ")) {
        Ok(b) => (
            Some(b.len() as u64),
            options.environment.then(|| split_nul(&b)),
        ),
        Err(_) => (None, None),
    };
    let start_time = boot_time.and_then(|bt| {
        let secs =
            bt.checked_add(i64::try_from(stat.start_ticks / ticks_per_second.max(1)).ok()?)?;
        time::OffsetDateTime::from_unix_timestamp(secs)
            .ok()?
            .format(&time::format_description::well_known::Rfc3339)
            .ok()
    });
    let namespaces = NAMESPACES
        .iter()
        .filter_map(|ns| {
            let t = std::fs::read_link(dir.join("ns").join(ns)).ok()?;
            Some(((*ns).to_owned(), t.to_string_lossy().into_owned()))
        })
        .collect();
    let cgroup_raw = std::fs::read(dir.join("cgroup")).unwrap_or_default();
    let cgroup: Vec<Text> = cgroup_raw
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| Text(l.to_vec()))
        .collect();
    let mut record = ProcessRecord {
        pid,
        ppid: stat.ppid,
        name,
        state: stat.state,
        uids: status.uids,
        gids: status.gids,
        threads: stat.threads,
        start_ticks: stat.start_ticks,
        start_time,
        cmdline,
        cmdline_truncated,
        environment_bytes,
        environment,
        exe: None,
        exe_deleted: false,
        exe_memfd: false,
        exe_size: None,
        exe_sha256: None,
        cwd: link(&dir.join("cwd")).ok(),
        root: link(&dir.join("root")).ok(),
        namespaces,
        nspid: status.nspid,
        container_id: container_id(&cgroup_raw),
        cgroup,
    };
    // Kernel threads have no exe: readlink fails with ENOENT, which says nothing.
    if let Ok(exe) = link(&dir.join("exe")) {
        record.exe_deleted = exe.0.ends_with(b" (deleted)");
        record.exe_memfd = exe.0.starts_with(b"/memfd:");
        record.exe = Some(exe.clone());
        hash_exe(
            dir,
            pid,
            &exe,
            &mut record,
            options.exe_bytes,
            log,
            hashes,
            recovered,
        );
    }
    Some(record)
}

#[allow(clippy::too_many_arguments)]
fn hash_exe(
    dir: &Path,
    pid: u32,
    exe: &Text,
    record: &mut ProcessRecord,
    exe_bytes: u64,
    log: &mut Log,
    hashes: &mut HashMap<ExeKey, (u64, String)>,
    recovered: &mut dyn FnMut(Recovered, &mut Log),
) {
    let path: PathBuf = dir.join("exe");
    let suspect = record.exe_deleted || record.exe_memfd;
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) => {
            log.unreadable(path.as_os_str().as_bytes().to_vec(), &e);
            return;
        }
    };
    let meta = match file.metadata() {
        Ok(m) => m,
        Err(e) => {
            log.unreadable(path.as_os_str().as_bytes().to_vec(), &e);
            return;
        }
    };
    let key = (meta.dev(), meta.ino(), meta.size(), meta.mtime());
    if !suspect && let Some((size, sha)) = hashes.get(&key) {
        record.exe_size = Some(*size);
        record.exe_sha256 = Some(sha.clone());
        return;
    }
    // Read once: hash every executable, keep the bytes of a suspect one for recovery.
    let keep = suspect && meta.size() <= exe_bytes;
    let mut bytes = Vec::new();
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    let mut reader = file;
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let chunk = buf.get(..n).unwrap_or_default();
                hasher.update(chunk);
                size += n as u64;
                if keep && size <= exe_bytes {
                    bytes.extend_from_slice(chunk);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                log.unreadable(path.as_os_str().as_bytes().to_vec(), &e);
                return;
            }
        }
    }
    let sha = hex::encode(hasher.finalize());
    record.exe_size = Some(size);
    record.exe_sha256 = Some(sha.clone());
    hashes.insert(key, (size, sha.clone()));
    if suspect {
        if keep && size <= exe_bytes {
            recovered(
                Recovered {
                    pid,
                    exe: exe.clone(),
                    sha256: sha,
                    bytes,
                },
                log,
            );
        } else {
            log.skipped(
                format!("pid {pid} executable {exe}").as_str(),
                format!("{size} bytes, over the executable budget of {exe_bytes} (raise --exe-budget); its SHA-256 is in the process record"),
            );
        }
    }
}

fn open_files(dir: &Path, pid: u32, out: &mut Processes, log: &mut Log) {
    let fd_dir = dir.join("fd");
    let entries = match std::fs::read_dir(&fd_dir) {
        Ok(d) => d,
        Err(e) => {
            if !vanished(&e) {
                log.unreadable(fd_dir.as_os_str().as_bytes().to_vec(), &e);
            }
            return;
        }
    };
    let mut fds: Vec<(u32, PathBuf)> = entries
        .filter_map(|e| {
            let e = e.ok()?;
            Some((e.file_name().to_str()?.parse().ok()?, e.path()))
        })
        .collect();
    fds.sort_unstable_by_key(|(fd, _)| *fd);
    for (fd, path) in fds {
        // A descriptor closed between the listing and the readlink is simply gone.
        let Ok(target) = link(&path) else { continue };
        let socket_inode = socket_inode(&target.0);
        if let Some(inode) = socket_inode {
            let owners = out.socket_owners.entry(inode).or_default();
            if !owners.contains(&pid) {
                owners.push(pid);
            }
        }
        out.open_files.push(OpenFile {
            pid,
            fd,
            deleted: target.0.ends_with(b" (deleted)"),
            target,
            socket_inode,
        });
    }
}

/// `socket:[12345]` → 12345.
pub fn socket_inode(target: &[u8]) -> Option<u64> {
    let inner = target.strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    std::str::from_utf8(inner).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn stat_with_a_hostile_name() {
        let s = parse_stat(b"42 (a) b) (c\n) S 1 42 42 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 3 0 12345 1000 10 18446744073709551615").unwrap();
        assert_eq!(
            s,
            Stat {
                state: "S".into(),
                ppid: 1,
                threads: 3,
                start_ticks: 12345
            }
        );
        assert!(parse_stat(b"42 (x) S 1").is_none());
    }

    #[test]
    fn status_fields() {
        let s = parse_status(
            b"Name:\tx\nUid:\t0\t1\t2\t3\nGid:\t4\t5\t6\t7\nNSpid:\t900\t1\n\xff\xfe\n",
        );
        assert_eq!(s.uids, vec![0, 1, 2, 3]);
        assert_eq!(s.gids, vec![4, 5, 6, 7]);
        assert_eq!(s.nspid, vec![900, 1]);
    }

    #[test]
    fn container_ids_from_cgroup_paths() {
        let id = "a".repeat(64);
        assert_eq!(
            container_id(format!("0::/system.slice/docker-{id}.scope\n").as_bytes()),
            Some(id.clone())
        );
        assert_eq!(
            container_id(format!("0::/kubepods/pod1/{id}").as_bytes()),
            Some(id)
        );
        assert_eq!(
            container_id(format!("0::/{}", "b".repeat(65)).as_bytes()),
            None
        );
        assert_eq!(container_id(b"0::/user.slice"), None);
    }

    #[test]
    fn socket_inodes() {
        assert_eq!(socket_inode(b"socket:[123]"), Some(123));
        assert_eq!(socket_inode(b"pipe:[123]"), None);
        assert_eq!(socket_inode(b"socket:[x]"), None);
    }

    /// This test's own process: found, with its executable hashed as a reader of the file
    /// would hash it.
    #[test]
    fn finds_this_process_and_hashes_its_executable() {
        let mut log = Log::default();
        let found = collect(
            Path::new("/proc"),
            ProcessOptions {
                cmdline_bytes: 4096,
                exe_bytes: 1 << 20,
                environment: false,
            },
            None,
            100,
            &Deadline::new(std::time::Duration::from_secs(60)),
            &mut log,
            &mut |_, _| {},
        );
        let me = std::process::id();
        let r = found.records.iter().find(|r| r.pid == me).unwrap();
        let exe = std::env::current_exe().unwrap();
        let want = hex::encode(Sha256::digest(std::fs::read(&exe).unwrap()));
        assert_eq!(r.exe_sha256.as_deref(), Some(want.as_str()));
        assert!(r.environment.is_none() && r.environment_bytes.is_some());
        assert!(found.open_files.iter().any(|f| f.pid == me));
    }

    /// A process whose /proc entry disappears between the listing and the read (it exited) is
    /// listed as unreadable with why, and the walk goes on.
    #[test]
    fn a_process_that_exits_mid_collection_is_listed_not_fatal() {
        let proc_root = tempfile::tempdir().unwrap();
        std::fs::create_dir(proc_root.path().join("7")).unwrap();
        let live = proc_root.path().join("8");
        std::fs::create_dir(&live).unwrap();
        std::fs::write(
            live.join("stat"),
            "8 (x) S 1 8 8 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 99 0 0",
        )
        .unwrap();
        let mut log = Log::default();
        let found = collect(
            proc_root.path(),
            ProcessOptions {
                cmdline_bytes: 10,
                exe_bytes: 0,
                environment: false,
            },
            Some(1_700_000_000),
            100,
            &Deadline::new(std::time::Duration::from_secs(60)),
            &mut log,
            &mut |_, _| {},
        );
        assert_eq!(found.records.len(), 1);
        assert_eq!(
            found.records[0].start_time.as_deref(),
            Some("2023-11-14T22:13:20Z")
        );
        let (_, unreadable) = log.finish();
        let gone = unreadable
            .iter()
            .find(|u| u.item.lossy().ends_with("/7"))
            .unwrap();
        assert_eq!(gone.errno.as_deref(), Some("ENOENT"));
        assert_eq!(gone.error, "the process exited during collection");
    }

    proptest! {
        #[test]
        fn stat_and_status_parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = parse_stat(&bytes);
            let _ = parse_status(&bytes);
            let _ = container_id(&bytes);
            let _ = socket_inode(&bytes);
        }
    }
}
