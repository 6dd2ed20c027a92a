//! Accounts (`/etc/passwd`), who is logged in (utmp), recent logins (wtmp, the newest records
//! within the file budget) and each account's last login (lastlog, read at the account's uid
//! only: the file is sparse and can be terabytes long).

use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::FileExt;
use std::path::Path;

use airf_evidence::triage::Text;
use serde::Serialize;

use super::log::Log;

/// glibc's `struct utmp` on x86_64.
pub const UTMP_SIZE: usize = 384;
/// glibc's `struct lastlog` on x86_64.
pub const LASTLOG_SIZE: usize = 292;

/// One account.
#[derive(Debug, Clone, Serialize)]
pub struct Account {
    pub name: Text,
    pub uid: u32,
    pub gid: u32,
    pub gecos: Text,
    pub home: Text,
    pub shell: Text,
    /// From lastlog: UTC RFC 3339, terminal, host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_login: Option<LastLogin>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LastLogin {
    pub time: String,
    pub line: Text,
    pub host: Text,
}

/// One utmp/wtmp record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Login {
    /// `utmp` (logged in now) or `wtmp` (history).
    pub source: &'static str,
    /// `USER_PROCESS`, `DEAD_PROCESS`, `BOOT_TIME`, ...
    pub kind: String,
    pub pid: i32,
    pub line: Text,
    pub user: Text,
    pub host: Text,
    pub address: String,
    pub time: String,
}

fn field(rec: &[u8], at: usize, len: usize) -> Text {
    let bytes = rec.get(at..at + len).unwrap_or_default();
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    Text(bytes.get(..end).unwrap_or_default().to_vec())
}

fn i32_at(rec: &[u8], at: usize) -> i32 {
    rec.get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map(i32::from_le_bytes)
        .unwrap_or(0)
}

fn rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}

fn kind(t: i16) -> String {
    match t {
        0 => "EMPTY",
        1 => "RUN_LVL",
        2 => "BOOT_TIME",
        3 => "NEW_TIME",
        4 => "OLD_TIME",
        5 => "INIT_PROCESS",
        6 => "LOGIN_PROCESS",
        7 => "USER_PROCESS",
        8 => "DEAD_PROCESS",
        9 => "ACCOUNTING",
        _ => return format!("type {t}"),
    }
    .to_owned()
}

/// Parses one utmp record (exactly [`UTMP_SIZE`] bytes).
pub fn parse_utmp(rec: &[u8], source: &'static str) -> Option<Login> {
    if rec.len() != UTMP_SIZE {
        return None;
    }
    let t = i16::from_le_bytes(rec.get(0..2)?.try_into().ok()?);
    let v6: [u8; 16] = rec.get(348..364)?.try_into().ok()?;
    let address = if v6.get(4..).is_some_and(|rest| rest.iter().all(|&b| b == 0)) {
        let v4: [u8; 4] = v6.get(..4)?.try_into().ok()?;
        if v4 == [0; 4] {
            String::new()
        } else {
            Ipv4Addr::from(v4).to_string()
        }
    } else {
        Ipv6Addr::from(v6).to_string()
    };
    Some(Login {
        source,
        kind: kind(t),
        pid: i32_at(rec, 4),
        line: field(rec, 8, 32),
        user: field(rec, 44, 32),
        host: field(rec, 76, 256),
        address,
        time: rfc3339(i64::from(i32_at(rec, 340))),
    })
}

/// Parses whole utmp records; a short tail is ignored.
pub fn parse_utmp_file(bytes: &[u8], source: &'static str) -> Vec<Login> {
    bytes
        .chunks_exact(UTMP_SIZE)
        .filter_map(|r| parse_utmp(r, source))
        .filter(|l| l.kind != "EMPTY")
        .collect()
}

/// Parses one lastlog record; None for "never logged in".
pub fn parse_lastlog(rec: &[u8]) -> Option<LastLogin> {
    if rec.len() != LASTLOG_SIZE {
        return None;
    }
    let t = i32_at(rec, 0);
    (t != 0).then(|| LastLogin {
        time: rfc3339(i64::from(t)),
        line: field(rec, 4, 32),
        host: field(rec, 36, 256),
    })
}

/// Parses `/etc/passwd` (bad lines skipped).
pub fn parse_passwd(bytes: &[u8]) -> Vec<Account> {
    bytes
        .split(|&b| b == b'\n')
        .filter_map(|line| {
            let f: Vec<&[u8]> = line.split(|&b| b == b':').collect();
            if f.len() < 7 {
                return None;
            }
            let num = |b: &[u8]| std::str::from_utf8(b).ok()?.parse().ok();
            Some(Account {
                name: Text(f.first()?.to_vec()),
                uid: num(f.get(2)?)?,
                gid: num(f.get(3)?)?,
                gecos: Text(f.get(4)?.to_vec()),
                home: Text(f.get(5)?.to_vec()),
                shell: Text(f.get(6)?.to_vec()),
                last_login: None,
            })
        })
        .collect()
}

/// What [`collect`] read.
#[derive(Debug, Default)]
pub struct Users {
    pub accounts: Vec<Account>,
    pub logins: Vec<Login>,
}

/// Reads accounts, utmp, the newest `max_bytes` of wtmp and lastlog, under `root`.
pub fn collect(root: &Path, max_bytes: u64, log: &mut Log) -> Users {
    let mut users = Users::default();
    let passwd = root.join("etc/passwd");
    match std::fs::read(&passwd) {
        Ok(b) => users.accounts = parse_passwd(&b),
        Err(e) => log.unreadable(passwd.to_string_lossy().as_ref(), &e),
    }
    for (path, source) in [
        ("run/utmp", "utmp"),
        ("var/run/utmp", "utmp"),
        ("var/log/wtmp", "wtmp"),
    ] {
        let path = root.join(path);
        if source == "utmp" && !users.logins.is_empty() {
            continue; // /var/run is usually a link to /run
        }
        match read_tail(&path, max_bytes, UTMP_SIZE as u64) {
            Ok((bytes, cut)) => {
                users.logins.extend(parse_utmp_file(&bytes, source));
                if cut {
                    log.skipped(
                        path.to_string_lossy().as_ref(),
                        format!("only its newest {max_bytes} bytes were read (the file budget)"),
                    );
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => log.unreadable(path.to_string_lossy().as_ref(), &e),
        }
    }
    let lastlog = root.join("var/log/lastlog");
    if let Ok(f) = std::fs::File::open(&lastlog) {
        for a in &mut users.accounts {
            let mut rec = vec![0u8; LASTLOG_SIZE];
            let at = u64::from(a.uid) * LASTLOG_SIZE as u64;
            if f.read_exact_at(&mut rec, at).is_ok() {
                a.last_login = parse_lastlog(&rec);
            }
        }
    }
    users
}

/// The last `max` bytes of a file, aligned to whole records; true when the file was longer.
fn read_tail(path: &Path, max: u64, record: u64) -> std::io::Result<(Vec<u8>, bool)> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let keep = max.min(len) / record * record;
    let start = len - keep;
    f.seek(SeekFrom::Start(start))?;
    let mut out = Vec::new();
    f.take(keep).read_to_end(&mut out)?;
    Ok((out, start > 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn utmp(t: i16, user: &[u8], host: &[u8], addr: [u8; 4], secs: i32) -> Vec<u8> {
        let mut r = vec![0u8; UTMP_SIZE];
        r[0..2].copy_from_slice(&t.to_le_bytes());
        r[4..8].copy_from_slice(&77i32.to_le_bytes());
        r[8..13].copy_from_slice(b"pts/0");
        r[44..44 + user.len()].copy_from_slice(user);
        r[76..76 + host.len()].copy_from_slice(host);
        r[340..344].copy_from_slice(&secs.to_le_bytes());
        r[348..352].copy_from_slice(&addr);
        r
    }

    #[test]
    fn utmp_records() {
        let mut f = utmp(7, b"root", b"203.0.113.9", [203, 0, 113, 9], 1_700_000_000);
        f.extend(utmp(0, b"", b"", [0; 4], 0));
        f.extend([1, 2, 3]);
        let l = parse_utmp_file(&f, "wtmp");
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].kind, "USER_PROCESS");
        assert_eq!(l[0].user, Text::from("root"));
        assert_eq!(l[0].line, Text::from("pts/0"));
        assert_eq!(l[0].address, "203.0.113.9");
        assert_eq!(l[0].time, "2023-11-14T22:13:20Z");
        assert_eq!(l[0].pid, 77);
    }

    #[test]
    fn passwd_and_uid0() {
        let a = parse_passwd(b"root:x:0:0:root:/root:/bin/bash\nbad line\ntoor:x:0:0::/root:/bin/sh\nu:x:1000:1000::/home/u:/bin/sh");
        assert_eq!(a.len(), 3);
        assert_eq!(a.iter().filter(|a| a.uid == 0).count(), 2);
    }

    #[test]
    fn lastlog_at_the_uid_and_wtmp_tail() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::create_dir_all(dir.path().join("var/log")).unwrap();
        std::fs::write(dir.path().join("etc/passwd"), "u:x:3:3::/home/u:/bin/sh\n").unwrap();
        let mut ll = vec![0u8; LASTLOG_SIZE * 4];
        ll[3 * LASTLOG_SIZE..3 * LASTLOG_SIZE + 4].copy_from_slice(&1_000i32.to_le_bytes());
        std::fs::write(dir.path().join("var/log/lastlog"), ll).unwrap();
        let mut wtmp = Vec::new();
        for i in 0..10 {
            wtmp.extend(utmp(7, b"u", b"h", [10, 0, 0, 1], i));
        }
        std::fs::write(dir.path().join("var/log/wtmp"), wtmp).unwrap();
        let mut log = Log::default();
        let u = collect(dir.path(), (UTMP_SIZE * 3 + 5) as u64, &mut log);
        assert_eq!(
            u.accounts[0].last_login.as_ref().unwrap().time,
            "1970-01-01T00:16:40Z"
        );
        assert_eq!(u.logins.len(), 3, "the newest three records");
        assert_eq!(u.logins[2].time, "1970-01-01T00:00:09Z");
        let (skipped, _) = log.finish();
        assert_eq!(skipped.len(), 1);
    }

    proptest! {
        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1200)) {
            let _ = parse_utmp_file(&bytes, "wtmp");
            let _ = parse_passwd(&bytes);
            let _ = parse_lastlog(bytes.get(..LASTLOG_SIZE.min(bytes.len())).unwrap_or_default());
        }
    }
}
