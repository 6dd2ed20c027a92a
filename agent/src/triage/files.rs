//! Configuration, persistence and log files, copied whole (logs: their newest bytes) into one
//! `tar.zst` streamed to the evidence folder, each hashed in the manifest.
//!
//! Paths are opened one component at a time with `O_NOFOLLOW` from the collection root, so a
//! symbolic link is recorded (with its target) and never followed: an attacker's
//! `~/.bash_history -> /etc/shadow`, or a `.ssh` pointing at another user's, copies nothing it
//! should not. Only regular files are read (a FIFO would block the run).

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};

use airf_evidence::triage::{CopiedFile, Text};
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};

use super::log::{Deadline, Log};
use super::users::Account;
use crate::hash::Sha256;
use crate::sink::{ImageSink, SinkError, StoredObject};

/// Deepest directory level walked below a collected directory.
const MAX_DEPTH: usize = 6;

/// One path to collect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// Absolute path on the host.
    pub path: PathBuf,
    pub reason: &'static str,
    /// Over the file budget, keep the newest bytes (text logs) instead of skipping.
    pub tail: bool,
}

fn w(path: impl Into<PathBuf>, reason: &'static str) -> Wanted {
    Wanted {
        path: path.into(),
        reason,
        tail: false,
    }
}

/// Files under each home directory.
const HOME_FILES: &[(&str, &str)] = &[
    (".ssh/authorized_keys", "ssh"),
    (".ssh/authorized_keys2", "ssh"),
    (".ssh/config", "ssh"),
    (".ssh/known_hosts", "ssh"),
    (".bash_history", "history"),
    (".zsh_history", "history"),
    (".ash_history", "history"),
    (".sh_history", "history"),
    (".history", "history"),
    (".python_history", "history"),
    (".mysql_history", "history"),
    (".psql_history", "history"),
    (".lesshst", "history"),
    (".viminfo", "history"),
    (".wget-hsts", "history"),
    (".bashrc", "shell"),
    (".bash_profile", "shell"),
    (".bash_login", "shell"),
    (".bash_logout", "shell"),
    (".profile", "shell"),
    (".zshrc", "shell"),
    (".config/systemd/user", "systemd"),
    (".config/autostart", "autostart"),
];

/// What to collect, most telling first (the size budget is spent in this order).
pub fn wanted(accounts: &[Account], shadow: bool) -> Vec<Wanted> {
    let mut out = vec![
        w("/etc/ld.so.preload", "preload"),
        w("/etc/ld.so.conf", "preload"),
        w("/etc/ld.so.conf.d", "preload"),
        w("/etc/crontab", "cron"),
        w("/etc/anacrontab", "cron"),
        w("/etc/cron.d", "cron"),
        w("/etc/cron.hourly", "cron"),
        w("/etc/cron.daily", "cron"),
        w("/etc/cron.weekly", "cron"),
        w("/etc/cron.monthly", "cron"),
        w("/var/spool/cron", "cron"),
        w("/var/spool/anacron", "cron"),
        w("/etc/rc.local", "rc"),
        w("/etc/rc.d/rc.local", "rc"),
        w("/etc/passwd", "accounts"),
        w("/etc/group", "accounts"),
        w("/etc/sudoers", "sudo"),
        w("/etc/sudoers.d", "sudo"),
        w("/etc/ssh/sshd_config", "ssh"),
        w("/etc/ssh/sshd_config.d", "ssh"),
        w("/etc/systemd/system", "systemd"),
        w("/etc/systemd/user", "systemd"),
        w("/run/systemd/system", "systemd"),
        w("/etc/profile", "shell"),
        w("/etc/profile.d", "shell"),
        w("/etc/bash.bashrc", "shell"),
        w("/etc/environment", "shell"),
        w("/etc/hosts", "network"),
        w("/etc/resolv.conf", "network"),
        w("/etc/pam.d", "pam"),
        w("/etc/security/pam_env.conf", "pam"),
        w("/etc/modules", "modules"),
        w("/etc/modules-load.d", "modules"),
        w("/etc/modprobe.d", "modules"),
        w("/etc/udev/rules.d", "udev"),
        w("/etc/xdg/autostart", "autostart"),
        w("/etc/apt/sources.list", "packages"),
        w("/etc/apt/sources.list.d", "packages"),
        w("/etc/yum.repos.d", "packages"),
        w("/var/lib/dpkg/status", "packages"),
    ];
    if shadow {
        out.push(w("/etc/shadow", "accounts"));
        out.push(w("/etc/gshadow", "accounts"));
    }
    let mut homes: Vec<PathBuf> = accounts
        .iter()
        .map(|a| PathBuf::from(OsStr::from_bytes(&a.home.0)))
        .filter(|h| h.is_absolute() && h != Path::new("/"))
        .collect();
    homes.push("/root".into());
    homes.sort();
    homes.dedup();
    for home in homes {
        for (file, reason) in HOME_FILES {
            out.push(w(home.join(file), reason));
        }
    }
    out.push(w("/usr/lib/systemd/system", "systemd"));
    for log in [
        "auth.log",
        "secure",
        "syslog",
        "messages",
        "kern.log",
        "audit/audit.log",
        "cloud-init.log",
        "cloud-init-output.log",
    ] {
        for suffix in ["", ".1"] {
            out.push(Wanted {
                path: Path::new("/var/log").join(format!("{log}{suffix}")),
                reason: "log",
                tail: true,
            });
        }
    }
    for bin in ["wtmp", "btmp"] {
        out.push(Wanted {
            path: Path::new("/var/log").join(bin),
            reason: "log",
            tail: true,
        });
    }
    out.push(w("/var/log/journal", "journal"));
    out.push(w("/run/log/journal", "journal"));
    out
}

/// The budgets of one copy.
#[derive(Debug, Clone, Copy)]
pub struct FileBudgets {
    pub file_bytes: u64,
    pub total_bytes: u64,
}

/// Compressed bytes to the sink, hashed on the way.
struct SinkWriter {
    sink: Box<dyn ImageSink>,
    sha: Sha256,
    size: u64,
    buf: Vec<u8>,
    /// Set once the sink is aborted: the tar and zstd writers' own drops must not reach it.
    aborted: bool,
}

const CHUNK: usize = 1 << 20;

impl SinkWriter {
    fn abort(&mut self) {
        self.aborted = true;
        self.buf.clear();
        self.sink.abort();
    }

    fn drain(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.sink.write(&self.buf).map_err(std::io::Error::other)?;
        self.buf.clear();
        Ok(())
    }
}

impl Write for SinkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.aborted {
            return Err(std::io::Error::other("the archive was aborted"));
        }
        self.sha.update(data);
        self.size += data.len() as u64;
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.drain()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The stored archive.
#[derive(Debug)]
pub struct Archive {
    pub stored: StoredObject,
    pub size: u64,
    pub sha256: String,
    pub files: Vec<CopiedFile>,
}

/// Why the archive could not be stored (nothing of it is left behind).
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("writing the file archive failed: {0}")]
    Write(#[from] std::io::Error),
    #[error(transparent)]
    Sink(#[from] SinkError),
}

/// A file or link read safely, ready for the archive.
enum Entry {
    File {
        stat: FileStat,
        bytes: Vec<u8>,
        size: u64,
    },
    Link {
        stat: FileStat,
        target: OsString,
    },
}

/// Copies every `wanted` path found under `root` into `sink` as a tar.zst. On error the sink
/// is aborted.
pub fn archive(
    root: &Path,
    wanted: &[Wanted],
    budgets: FileBudgets,
    sink: Box<dyn ImageSink>,
    deadline: &Deadline,
    log: &mut Log,
) -> Result<Archive, ArchiveError> {
    let writer = SinkWriter {
        sink,
        sha: Sha256::new(),
        size: 0,
        buf: Vec::with_capacity(CHUNK),
        aborted: false,
    };
    let encoder = match zstd::stream::write::Encoder::new(writer, 3) {
        Ok(e) => e,
        Err(e) => return Err(ArchiveError::Write(e)),
    };
    let mut tar = tar::Builder::new(encoder);
    tar.mode(tar::HeaderMode::Complete);
    let mut copy = Copy {
        budgets,
        total: 0,
        files: Vec::new(),
        deadline,
    };
    let result = (|| -> std::io::Result<()> {
        let root_fd = open_dir_at(None, root)?;
        for want in wanted {
            if deadline.expired() {
                log.skipped(want.path.as_os_str().as_bytes().to_vec(), deadline.reason());
                continue;
            }
            copy.one(&root_fd, want, &mut tar, log)?;
        }
        Ok(())
    })();
    // Finish through &mut so a failure can still reach the sink and abort it.
    let finished = result
        .and_then(|()| tar.finish())
        .and_then(|()| tar.get_mut().do_finish())
        .and_then(|()| tar.get_mut().get_mut().drain());
    let writer = tar.get_mut().get_mut();
    if let Err(e) = finished {
        writer.abort();
        return Err(e.into());
    }
    let stored = match writer.sink.finish() {
        Ok(s) => s,
        Err(e) => {
            writer.abort();
            return Err(e.into());
        }
    };
    // Finished: the writers' drops have nothing more to write.
    writer.aborted = true;
    let sha = std::mem::take(&mut writer.sha);
    Ok(Archive {
        stored,
        size: writer.size,
        sha256: hex::encode(sha.finalize()),
        files: copy.files,
    })
}

struct Copy<'a> {
    budgets: FileBudgets,
    total: u64,
    files: Vec<CopiedFile>,
    deadline: &'a Deadline,
}

fn nix_io(e: nix::Error) -> std::io::Error {
    std::io::Error::from_raw_os_error(e as i32)
}

/// Opens a directory; `at` None means an absolute or cwd-relative path.
fn open_dir_at(at: Option<&OwnedFd>, path: &Path) -> std::io::Result<OwnedFd> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    match at {
        Some(fd) => nix::fcntl::openat(fd.as_fd(), path, flags, Mode::empty()),
        None => nix::fcntl::open(path, flags, Mode::empty()),
    }
    .map_err(nix_io)
}

impl Copy<'_> {
    fn one<W: Write>(
        &mut self,
        root_fd: &OwnedFd,
        want: &Wanted,
        tar: &mut tar::Builder<W>,
        log: &mut Log,
    ) -> std::io::Result<()> {
        let rel: Vec<&OsStr> = want
            .path
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n),
                _ => None,
            })
            .collect();
        let Some((last, parents)) = rel.split_last() else {
            return Ok(());
        };
        // Walk to the parent, refusing links on the way.
        let mut dir = match root_fd.try_clone() {
            Ok(d) => d,
            Err(e) => {
                log.unreadable(want.path.as_os_str().as_bytes().to_vec(), &e);
                return Ok(());
            }
        };
        let mut so_far = PathBuf::from("/");
        for p in parents {
            so_far.push(p);
            match open_dir_at(Some(&dir), Path::new(p)) {
                Ok(d) => dir = d,
                Err(e) if e.raw_os_error() == Some(nix::libc::ENOENT) => return Ok(()),
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(nix::libc::ELOOP | nix::libc::ENOTDIR)
                    ) =>
                {
                    // A symbolic link (or a file) where a directory was expected.
                    let stat =
                        nix::sys::stat::fstatat(dir.as_fd(), *p, AtFlags::AT_SYMLINK_NOFOLLOW);
                    if stat.is_ok_and(|s| {
                        SFlag::from_bits_truncate(s.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK
                    }) {
                        self.link(&dir, p, &so_far, want.reason, tar, log)?;
                    }
                    return Ok(());
                }
                Err(e) => {
                    log.unreadable(so_far.as_os_str().as_bytes().to_vec(), &e);
                    return Ok(());
                }
            }
        }
        self.entry(&dir, last, &want.path, want, 0, tar, log)
    }

    #[allow(clippy::too_many_arguments)]
    fn entry<W: Write>(
        &mut self,
        dir: &OwnedFd,
        name: &OsStr,
        path: &Path,
        want: &Wanted,
        depth: usize,
        tar: &mut tar::Builder<W>,
        log: &mut Log,
    ) -> std::io::Result<()> {
        let item = || path.as_os_str().as_bytes().to_vec();
        if self.deadline.expired() {
            log.skipped(item(), self.deadline.reason());
            return Ok(());
        }
        let stat = match nix::sys::stat::fstatat(dir.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(s) => s,
            Err(nix::Error::ENOENT) => return Ok(()),
            Err(e) => {
                log.unreadable(item(), &nix_io(e));
                return Ok(());
            }
        };
        let kind = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT;
        if kind == SFlag::S_IFLNK {
            return self.link(dir, name, path, want.reason, tar, log);
        }
        if kind == SFlag::S_IFDIR {
            if depth >= MAX_DEPTH {
                log.skipped(
                    item(),
                    format!("deeper than {MAX_DEPTH} levels below a collected folder"),
                );
                return Ok(());
            }
            let sub = match open_dir_at(Some(dir), Path::new(name)) {
                Ok(d) => d,
                Err(e) => {
                    log.unreadable(item(), &e);
                    return Ok(());
                }
            };
            let mut names = match list(&sub) {
                Ok(n) => n,
                Err(e) => {
                    log.unreadable(item(), &e);
                    return Ok(());
                }
            };
            if want.reason == "journal" {
                // Newest journal files first: the size budget keeps the recent ones.
                names.sort_by_key(|n| {
                    std::cmp::Reverse(
                        nix::sys::stat::fstatat(
                            sub.as_fd(),
                            n.as_os_str(),
                            AtFlags::AT_SYMLINK_NOFOLLOW,
                        )
                        .map(|s| s.st_mtime)
                        .unwrap_or(0),
                    )
                });
            }
            for n in names {
                self.entry(&sub, &n, &path.join(&n), want, depth + 1, tar, log)?;
            }
            return Ok(());
        }
        if kind != SFlag::S_IFREG {
            log.skipped(
                item(),
                "not a regular file (never opened: a FIFO or device could block or change state)",
            );
            return Ok(());
        }
        let size = u64::try_from(stat.st_size).unwrap_or(0);
        let (offset, take) = if size <= self.budgets.file_bytes {
            (0, size)
        } else if want.tail {
            log.skipped(
                item(),
                format!("{size} bytes, over the file budget of {}: its newest {} bytes were copied (raise --file-budget)", self.budgets.file_bytes, self.budgets.file_bytes),
            );
            (size - self.budgets.file_bytes, self.budgets.file_bytes)
        } else {
            log.skipped(
                item(),
                format!(
                    "{size} bytes, over the file budget of {} (raise --file-budget)",
                    self.budgets.file_bytes
                ),
            );
            return Ok(());
        };
        if self.total + take > self.budgets.total_bytes {
            log.skipped(
                item(),
                format!(
                    "the total size budget of {} bytes was spent (raise --total-budget)",
                    self.budgets.total_bytes
                ),
            );
            return Ok(());
        }
        let file = match nix::fcntl::openat(
            dir.as_fd(),
            name,
            OFlag::O_RDONLY
                | OFlag::O_NOFOLLOW
                | OFlag::O_NONBLOCK
                | OFlag::O_CLOEXEC
                | OFlag::O_NOATIME,
            Mode::empty(),
        )
        .or_else(|e| {
            // O_NOATIME is refused on files the caller does not own without CAP_FOWNER.
            if e == nix::Error::EPERM {
                nix::fcntl::openat(
                    dir.as_fd(),
                    name,
                    OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
            } else {
                Err(e)
            }
        }) {
            Ok(fd) => std::fs::File::from(fd),
            Err(e) => {
                log.unreadable(item(), &nix_io(e));
                return Ok(());
            }
        };
        let mut bytes = Vec::new();
        let read = if offset == 0 {
            (&file).take(take).read_to_end(&mut bytes).map(|_| ())
        } else {
            bytes.resize(usize::try_from(take).unwrap_or(0), 0);
            file.read_exact_at(&mut bytes, offset)
        };
        if let Err(e) = read {
            log.unreadable(item(), &e);
            return Ok(());
        }
        self.total += bytes.len() as u64;
        self.add(Entry::File { stat, size, bytes }, path, want.reason, tar)
    }

    #[allow(clippy::too_many_arguments)]
    fn link<W: Write>(
        &mut self,
        dir: &OwnedFd,
        name: &OsStr,
        path: &Path,
        reason: &'static str,
        tar: &mut tar::Builder<W>,
        log: &mut Log,
    ) -> std::io::Result<()> {
        let stat = nix::sys::stat::fstatat(dir.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW);
        let target = nix::fcntl::readlinkat(dir.as_fd(), name);
        match (stat, target) {
            (Ok(stat), Ok(target)) => self.add(Entry::Link { stat, target }, path, reason, tar),
            (Err(e), _) | (_, Err(e)) => {
                log.unreadable(path.as_os_str().as_bytes().to_vec(), &nix_io(e));
                Ok(())
            }
        }
    }

    fn add<W: Write>(
        &mut self,
        entry: Entry,
        path: &Path,
        reason: &'static str,
        tar: &mut tar::Builder<W>,
    ) -> std::io::Result<()> {
        let member = path.strip_prefix("/").unwrap_or(path);
        let mut header = tar::Header::new_gnu();
        let stat = match &entry {
            Entry::File { stat, .. } | Entry::Link { stat, .. } => *stat,
        };
        header.set_mode(stat.st_mode & 0o7777);
        header.set_uid(u64::from(stat.st_uid));
        header.set_gid(u64::from(stat.st_gid));
        header.set_mtime(u64::try_from(stat.st_mtime).unwrap_or(0));
        match entry {
            Entry::File { bytes, size, .. } => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(bytes.len() as u64);
                tar.append_data(&mut header, member, bytes.as_slice())?;
                self.files.push(CopiedFile {
                    path: Text(path.as_os_str().as_bytes().to_vec()),
                    reason: reason.to_owned(),
                    size,
                    copied: bytes.len() as u64,
                    sha256: hex::encode(Sha256::digest(&bytes)),
                    mtime: stat.st_mtime,
                    mode: stat.st_mode,
                    uid: stat.st_uid,
                    gid: stat.st_gid,
                    link_target: None,
                });
            }
            Entry::Link { target, .. } => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                tar.append_link(&mut header, member, Path::new(&target))?;
                self.files.push(CopiedFile {
                    path: Text(path.as_os_str().as_bytes().to_vec()),
                    reason: reason.to_owned(),
                    size: 0,
                    copied: 0,
                    sha256: hex::encode(Sha256::digest(b"")),
                    mtime: stat.st_mtime,
                    mode: stat.st_mode,
                    uid: stat.st_uid,
                    gid: stat.st_gid,
                    link_target: Some(Text(target.into_vec())),
                });
            }
        }
        Ok(())
    }
}

/// A directory's entry names, sorted (bytes, so the archive's order is reproducible).
fn list(dir: &OwnedFd) -> std::io::Result<Vec<OsString>> {
    let again = dir.try_clone()?;
    let d = nix::dir::Dir::from_fd(again).map_err(nix_io)?;
    let mut names: Vec<OsString> = d
        .into_iter()
        .filter_map(|e| e.ok())
        .map(|e| OsStr::from_bytes(e.file_name().to_bytes()).to_owned())
        .filter(|n| n != "." && n != "..")
        .collect();
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::MemorySink;
    use std::time::Duration;

    /// A sink that hands its bytes back through a shared buffer.
    struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl ImageSink for Shared {
        fn write(&mut self, data: &[u8]) -> Result<(), SinkError> {
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(())
        }
        fn finish(&mut self) -> Result<StoredObject, SinkError> {
            Ok(StoredObject::default())
        }
        fn abort(&mut self) -> crate::sink::AbortReport {
            crate::sink::AbortReport {
                clean: true,
                detail: String::new(),
            }
        }
    }

    fn run(root: &Path, wanted: &[Wanted], budgets: FileBudgets) -> (Archive, Vec<u8>, Log) {
        let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut log = Log::default();
        let a = archive(
            root,
            wanted,
            budgets,
            Box::new(Shared(buf.clone())),
            &Deadline::new(Duration::from_secs(60)),
            &mut log,
        )
        .unwrap();
        let tar = zstd::decode_all(buf.lock().unwrap().as_slice()).unwrap();
        (a, tar, log)
    }

    /// Path, body and link target of each archive member.
    type Member = (Vec<u8>, Vec<u8>, Option<Vec<u8>>);

    fn members(tar: &[u8]) -> Vec<Member> {
        let mut a = tar::Archive::new(tar);
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let path = e.path_bytes().to_vec();
                let link = e.link_name_bytes().map(|l| l.to_vec());
                let mut body = Vec::new();
                e.read_to_end(&mut body).unwrap();
                (path, body, link)
            })
            .collect()
    }

    const BIG: FileBudgets = FileBudgets {
        file_bytes: 1 << 20,
        total_bytes: 1 << 30,
    };

    /// Links are recorded, never followed, wherever they are: the last component, a directory
    /// on the way, or inside a walked folder; a newline in a name survives.
    #[test]
    fn links_are_recorded_not_followed() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("etc/cron.d")).unwrap();
        std::fs::create_dir_all(r.join("secret")).unwrap();
        std::fs::write(r.join("secret/shadow"), "root:hash").unwrap();
        std::fs::write(r.join("etc/cron.d/evil\nname"), "* * * * * root /tmp/x\n").unwrap();
        std::os::unix::fs::symlink("/secret/shadow", r.join("etc/cron.d/link")).unwrap();
        std::os::unix::fs::symlink("../secret", r.join("etc/ssh")).unwrap();
        std::os::unix::fs::symlink("secret/shadow", r.join("hist")).unwrap();
        let wanted = vec![
            w("/etc/cron.d", "cron"),
            w("/etc/ssh/shadow", "ssh"),
            w("/hist", "history"),
        ];
        let (a, tar, _) = run(r, &wanted, BIG);
        let m = members(&tar);
        let names: Vec<&[u8]> = m.iter().map(|(p, _, _)| p.as_slice()).collect();
        assert_eq!(
            names,
            vec![
                &b"etc/cron.d/evil\nname"[..],
                b"etc/cron.d/link",
                b"etc/ssh",
                b"hist"
            ]
        );
        assert!(m.iter().all(|(_, body, _)| body != b"root:hash"));
        assert_eq!(m[1].2.as_deref(), Some(&b"/secret/shadow"[..]));
        assert_eq!(a.files[0].path, Text(b"/etc/cron.d/evil\nname".to_vec()));
        assert_eq!(
            a.files[0].sha256,
            hex::encode(Sha256::digest(b"* * * * * root /tmp/x\n"))
        );
        assert_eq!(a.files[2].link_target, Some(Text::from("../secret")));
    }

    #[test]
    fn budgets_cut_logs_to_their_tail_and_skip_the_rest() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("var/log")).unwrap();
        std::fs::write(r.join("var/log/syslog"), b"old\nnewest\n").unwrap();
        std::fs::write(r.join("big.conf"), vec![b'x'; 100]).unwrap();
        std::fs::write(r.join("a"), b"12345").unwrap();
        std::fs::write(r.join("b"), b"12345").unwrap();
        let wanted = vec![
            Wanted {
                path: "/var/log/syslog".into(),
                reason: "log",
                tail: true,
            },
            w("/big.conf", "x"),
            w("/a", "x"),
            w("/b", "x"),
        ];
        let (a, tar, log) = run(
            r,
            &wanted,
            FileBudgets {
                file_bytes: 7,
                total_bytes: 12,
            },
        );
        let m = members(&tar);
        assert_eq!(m[0].1, b"newest\n");
        assert_eq!((a.files[0].size, a.files[0].copied), (11, 7));
        assert_eq!(m.len(), 2, "syslog tail and a; b is over the total");
        let (skipped, _) = log.finish();
        let reasons: Vec<&str> = skipped.iter().map(|s| s.reason.as_str()).collect();
        assert!(reasons[0].contains("newest 7 bytes"), "{reasons:?}");
        assert!(reasons[1].contains("over the file budget"), "{reasons:?}");
        assert!(reasons[2].contains("total size budget"), "{reasons:?}");
    }

    #[test]
    fn fifos_are_never_opened() {
        let root = tempfile::tempdir().unwrap();
        nix::unistd::mkfifo(&root.path().join("fifo"), Mode::S_IRWXU).unwrap();
        let (a, _, log) = run(root.path(), &[w("/fifo", "x")], BIG);
        assert!(a.files.is_empty());
        assert!(log.finish().0[0].reason.contains("not a regular file"));
    }

    #[test]
    fn a_failing_sink_is_aborted_and_named() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("f"), vec![7u8; 3 << 20]).unwrap();
        let mut log = Log::default();
        let e = archive(
            root.path(),
            &[w("/f", "x")],
            FileBudgets {
                file_bytes: 4 << 20,
                total_bytes: 1 << 30,
            },
            Box::new(MemorySink::failing_after(0)),
            &Deadline::new(Duration::from_secs(60)),
            &mut log,
        )
        .unwrap_err();
        assert!(e.to_string().contains("file archive"), "{e}");
    }
}
