//! `airf-agent triage` in a real Linux guest with planted indicators of compromise: each one
//! must be found, a recovered binary must hash as the original did, and the process and socket
//! lists must agree with the guest's own `ps` and `netstat` (busybox) run just before and
//! just after. `#[ignore]`d: `tests/vm/run-tests.sh` runs it.

use std::collections::BTreeSet;
use std::io::Read;
use std::process::Command;

use airf_e2e::vm::guest;
use airf_e2e::volatility::marker;
use airf_e2e::{S3Server, ServerKind, sha256, zstd_decompress};
use airf_evidence::triage::{Text, TriageManifest};
use anyhow::{Context, Result, ensure};

/// A static program that copies itself into a memfd and `fexecve`s it: the classic fileless
/// start. Run with `child`, it just waits.
const MEMFD_HELPER: &str = r#"
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "child") == 0) { for (;;) pause(); }
  int src = open("/proc/self/exe", O_RDONLY);
  int fd = memfd_create("airf-payload", 0);
  char buf[65536]; ssize_t n;
  if (src < 0 || fd < 0) { perror("memfd"); return 1; }
  while ((n = read(src, buf, sizeof buf)) > 0) { if (write(fd, buf, n) != n) return 1; }
  char *args[] = {"airf-payload", "child", NULL};
  char *env[] = {NULL};
  fexecve(fd, args, env);
  perror("fexecve");
  return 1;
}
"#;

/// Plants the indicators (section markers are built from `$1`, so the script's own text, which
/// `ps` shows as a command line, never holds one), prints the guest's own view before and after, runs triage between.
const SCRIPT: &str = r#"
set -u
/root/memfd-helper & echo "MEMFD_PID=$!" >&2
cp /bin/busybox /tmp/ghost; echo "GHOST_SHA=$(sha256sum /tmp/ghost | cut -d' ' -f1)" >&2
(exec -a sleep /tmp/ghost 3600) & echo "GHOST_PID=$!" >&2
nc -l -p 4444 >/dev/null 2>&1 & echo "BACKDOOR_PID=$!" >&2
(sleep 3600 | nc -l -p 5555 >/dev/null 2>&1) &
sleep 1
(sleep 3600 | nc 127.0.0.1 5555) &
mkdir -p /var/spool/cron/crontabs /etc/cron.d /root/.ssh /var/log
echo '* * * * * /tmp/.x >/dev/null 2>&1' > /var/spool/cron/crontabs/root
printf 'planted\n' > "/etc/cron.d/$(printf 'evil\nname')"
echo /lib/x86_64-linux-gnu/libairf-evil.so > /etc/ld.so.preload
echo 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAirfPlantedKeyForTheTriageTest airf-planted' > /root/.ssh/authorized_keys
printf 'root:x:0:0:root:/root:/bin/sh\ntoor:x:0:0::/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n' > /etc/passwd
mount -t tmpfs tmpfs /var/log && truncate -s 1G /var/log/syslog && echo airf-newest-line >> /var/log/syslog
sleep 1; rm /tmp/ghost
view() { echo "==PS$1=="; ps; echo "==/PS$1=="; echo "==NETSTAT$1=="; netstat -tuna; echo "==/NETSTAT$1=="; }
view 1 >&2
airf-agent triage --to "s3://$AIRF_TEST_BUCKET/vm/" --case VM-triage --no-progress --json
rc=$?
view 2 >&2
exit $rc
"#;

fn section<'a>(stderr: &'a str, name: &str) -> Result<&'a str> {
    stderr
        .split(&format!("=={name}==\n"))
        .nth(1)
        .and_then(|s| s.split(&format!("==/{name}==")).next())
        .with_context(|| format!("guest printed no =={name}== section"))
}

/// Pids in busybox `ps` output (PID USER TIME COMMAND).
fn ps_pids(text: &str) -> BTreeSet<u32> {
    text.lines()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

/// (protocol, local port, remote port, state) of busybox `netstat -tuna` TCP lines.
fn netstat_tcp(text: &str) -> BTreeSet<(u16, u16, String)> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if !f.first()?.starts_with("tcp") {
                return None;
            }
            let port = |a: &str| a.rsplit(':').next()?.parse::<u16>().ok().or(Some(0));
            Some((port(f.get(3)?)?, port(f.get(4)?)?, (*f.get(5)?).to_owned()))
        })
        .collect()
}

fn build_helper(dir: &std::path::Path) -> Result<std::path::PathBuf> {
    let src = dir.join("memfd-helper.c");
    let bin = dir.join("memfd-helper");
    std::fs::write(&src, MEMFD_HELPER)?;
    let out = Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .context(
            "gcc (the memfd helper is built with gcc -static; apt-get install gcc libc6-dev)",
        )?;
    ensure!(
        out.status.success(),
        "gcc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(bin)
}

fn jsonl(server: &S3Server, folder: &str, category: &str) -> Result<Vec<serde_json::Value>> {
    let bytes = server.get(&format!("{folder}/triage.{category}.jsonl"))?;
    bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| Ok(serde_json::from_slice(l)?))
        .collect()
}

#[test]
#[ignore = "boots a VM; run by tests/vm/run-tests.sh"]
fn triage_finds_every_planted_indicator() -> Result<()> {
    let server = S3Server::start(ServerKind::Garage)?;
    let work = tempfile::tempdir()?;
    let helper = build_helper(work.path())?;
    let helper_sha = sha256(&std::fs::read(&helper)?);
    let file = format!("{}:/root/memfd-helper", helper.display());
    let run = guest(Some(&server), &["--file", &file], SCRIPT)?;
    ensure!(
        run.code == 0,
        "triage failed in the guest ({}):\n{}\n{}",
        run.code,
        run.stdout,
        run.stderr
    );
    let result: serde_json::Value =
        serde_json::from_str(&run.stdout).with_context(|| format!("result: {}", run.stdout))?;
    let source = &result["sources"][0];
    ensure!(source["status"] == "complete", "{result:#}");
    let manifest_key = source["manifest"]["location"]
        .as_str()
        .and_then(|l| l.strip_prefix(&format!("s3://{}/", server.bucket)))
        .context("no manifest location")?
        .to_owned();
    let folder = manifest_key
        .trim_end_matches("/triage.manifest.json")
        .to_owned();
    let m: TriageManifest = serde_json::from_slice(&server.get(&manifest_key)?)?;
    let m = m.check()?;
    eprintln!(
        "triage in the guest: {:.2} s, {} processes, {} files copied, {} skipped, {} unreadable",
        m.duration_seconds,
        m.headline.processes,
        m.copied_files.len(),
        m.skipped.len(),
        m.unreadable.len()
    );
    // Every object is stored as the manifest says.
    for o in &m.objects {
        let bytes = server.get(&format!("{folder}/{}", o.name))?;
        ensure!(
            bytes.len() as u64 == o.size && sha256(&bytes) == o.sha256,
            "{} differs from its manifest entry",
            o.name
        );
    }
    ensure!(
        !m.skipped.iter().any(|s| s.reason.contains("time budget")),
        "the time budget ran out: {:?}",
        m.skipped
    );

    // 1. A process running from a deleted binary, recovered byte for byte.
    let ghost: u32 = marker(&run.stderr, "GHOST_PID")?.parse()?;
    let ghost_sha = marker(&run.stderr, "GHOST_SHA")?;
    let procs = jsonl(&server, &folder, "processes")?;
    let rec = |pid: u32| {
        procs
            .iter()
            .find(|p| p["pid"] == pid)
            .cloned()
            .unwrap_or_default()
    };
    ensure!(rec(ghost)["exe_deleted"] == true, "ghost: {}", rec(ghost));
    let recovered = |pid: u32| {
        m.recovered_executables
            .iter()
            .find(|r| r.pids.contains(&pid))
    };
    let r = recovered(ghost).context("the deleted binary was not recovered")?;
    ensure!(
        r.sha256 == ghost_sha,
        "recovered {} != original {ghost_sha}",
        r.sha256
    );
    ensure!(sha256(&server.get(&format!("{folder}/{}", r.object))?) == ghost_sha);
    // 2. A process running from a memfd.
    let memfd: u32 = marker(&run.stderr, "MEMFD_PID")?.parse()?;
    ensure!(rec(memfd)["exe_memfd"] == true, "memfd: {}", rec(memfd));
    let r = recovered(memfd).context("the memfd binary was not recovered")?;
    ensure!(
        r.sha256 == helper_sha,
        "recovered {} != helper {helper_sha}",
        r.sha256
    );
    ensure!(
        m.headline
            .deleted_exe_processes
            .iter()
            .any(|p| p.pid == ghost)
            && m.headline
                .deleted_exe_processes
                .iter()
                .any(|p| p.pid == memfd),
        "headline: {:?}",
        m.headline.deleted_exe_processes
    );
    // 3. The backdoor listener, with its owner.
    let backdoor: u32 = marker(&run.stderr, "BACKDOOR_PID")?.parse()?;
    ensure!(
        m.headline
            .listening
            .iter()
            .any(|l| l.protocol.starts_with("tcp")
                && l.local.ends_with(":4444")
                && l.pids.contains(&backdoor)),
        "listening: {:?}",
        m.headline.listening
    );
    // 4. The established loopback connection, both ends.
    let sockets = jsonl(&server, &folder, "sockets")?;
    let established = |local: u16, remote: u16| {
        sockets.iter().any(|s| {
            s["state"] == "ESTABLISHED" && s["local_port"] == local && s["remote_port"] == remote
        })
    };
    ensure!(
        sockets
            .iter()
            .any(|s| s["state"] == "ESTABLISHED" && s["remote_port"] == 5555)
            && sockets
                .iter()
                .any(|s| s["state"] == "ESTABLISHED" && s["local_port"] == 5555),
        "no established connection to 5555: {sockets:?}"
    );
    // 5-7, 9. Cron, ld.so.preload, authorized_keys and the newline name, copied whole.
    let tar = zstd_decompress(&server.get(&format!("{folder}/triage.files.tar.zst"))?)?;
    let mut members = std::collections::BTreeMap::new();
    for e in tar::Archive::new(tar.as_slice()).entries()? {
        let mut e = e?;
        let path = e.path_bytes().to_vec();
        let mut body = Vec::new();
        e.read_to_end(&mut body)?;
        members.insert(path, body);
    }
    for (path, content) in [
        (
            "/var/spool/cron/crontabs/root",
            &b"* * * * * /tmp/.x >/dev/null 2>&1\n"[..],
        ),
        (
            "/etc/ld.so.preload",
            b"/lib/x86_64-linux-gnu/libairf-evil.so\n",
        ),
        ("/etc/cron.d/evil\nname", b"planted\n"),
    ] {
        let copied = m
            .copied_files
            .iter()
            .find(|c| c.path == Text::from(path))
            .with_context(|| format!("{path:?} was not copied"))?;
        ensure!(copied.sha256 == sha256(content), "{path:?}: {copied:?}");
        ensure!(
            members
                .get(path.trim_start_matches('/').as_bytes())
                .map(Vec::as_slice)
                == Some(content),
            "{path:?} is not in the archive as it was"
        );
    }
    let keys = members
        .get(&b"root/.ssh/authorized_keys"[..])
        .context("authorized_keys not in the archive")?;
    ensure!(String::from_utf8_lossy(keys).contains("airf-planted"));
    // 8. The second UID-0 account.
    ensure!(
        m.headline.uid0_accounts.contains(&Text::from("toor")),
        "{:?}",
        m.headline.uid0_accounts
    );
    // The budget: a 1 GiB log keeps its newest 16 MiB, and says so.
    let syslog = m
        .copied_files
        .iter()
        .find(|c| c.path == Text::from("/var/log/syslog"))
        .context("syslog not copied")?;
    ensure!(
        syslog.size == (1 << 30) + 17 && syslog.copied == 16 << 20,
        "{syslog:?}"
    );
    ensure!(
        members
            .get(&b"var/log/syslog"[..])
            .is_some_and(|b| b.ends_with(b"airf-newest-line\n")),
        "the syslog tail is not its newest bytes"
    );
    ensure!(
        m.skipped
            .iter()
            .any(|s| s.item == Text::from("/var/log/syslog"))
    );

    // Against the guest's own tools: every process ps saw before and after is listed; every
    // listed process was seen by ps, or is one the run itself started.
    let (before, after) = (
        ps_pids(section(&run.stderr, "PS1")?),
        ps_pids(section(&run.stderr, "PS2")?),
    );
    let listed: BTreeSet<u32> = procs
        .iter()
        .filter_map(|p| p["pid"].as_u64())
        .filter_map(|p| u32::try_from(p).ok())
        .collect();
    let missing: Vec<&u32> = before
        .intersection(&after)
        .filter(|p| !listed.contains(p))
        .collect();
    ensure!(
        missing.is_empty(),
        "ps saw {missing:?} before and after, triage did not"
    );
    let unseen: Vec<String> = listed
        .iter()
        .filter(|p| !before.contains(p) && !after.contains(p))
        .map(|p| rec(*p)["name"].to_string())
        .collect();
    ensure!(
        unseen
            .iter()
            .all(|n| n.contains("airf-agent") || n.contains("ps") || n.contains("sh")),
        "triage listed processes ps never saw: {unseen:?}"
    );
    let (n1, n2) = (
        netstat_tcp(section(&run.stderr, "NETSTAT1")?),
        netstat_tcp(section(&run.stderr, "NETSTAT2")?),
    );
    for (local, remote, state) in n1.intersection(&n2) {
        if state == "LISTEN" || state == "ESTABLISHED" {
            ensure!(
                sockets.iter().any(|s| s["state"] == state.as_str()
                    && s["local_port"] == *local
                    && s["remote_port"] == *remote)
                    || (state == "ESTABLISHED" && established(*local, *remote)),
                "netstat shows tcp {local}->{remote} {state}, triage does not: {sockets:?}"
            );
        }
    }
    Ok(())
}
