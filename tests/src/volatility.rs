//! Volatility 3 as an analyst runs it, over memory images captured in the test VM: the guest
//! plants a canary process and a listening socket and prints what its own `/proc` says just
//! before the capture ([`CANARY_PRELUDE`], [`GuestState`]); [`check_plugins`] runs
//! `linux.pslist`, `linux.lsmod` and `linux.sockstat` with airf's symbol table and compares.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};

/// Port the guest's canary listener binds.
pub const LISTEN_PORT: u16 = 45678;

/// Guest shell that starts the canaries and prints the guest's own view on stderr: a renamed
/// busybox `sleep` (comm `airfcanary`), a `nc` listener, then every pid with its comm and the
/// loaded modules.
pub const CANARY_PRELUDE: &str = r#"cp /bin/busybox /tmp/airfcanary; (exec -a sleep /tmp/airfcanary 3600) & echo "CANARY_PID=$!" >&2; busybox nc -l -p 45678 >/dev/null 2>&1 & echo "LISTENER_PID=$!" >&2; sleep 1; { echo ==PROCS==; for d in /proc/[0-9]*; do echo "${d#/proc/} $(cat $d/comm 2>/dev/null)"; done; echo ==END==; echo ==MODULES==; cut -d' ' -f1 /proc/modules; echo ==END==; } >&2;"#;

/// What the guest said about itself just before the capture.
#[derive(Debug, Clone)]
pub struct GuestState {
    pub canary_pid: u32,
    pub listener_pid: u32,
    /// pid → comm, from `/proc`.
    pub procs: BTreeMap<u32, String>,
    pub modules: BTreeSet<String>,
}

/// A `KEY=value` line the guest printed on stderr.
pub fn marker(stderr: &str, key: &str) -> Result<String> {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(str::to_owned)
        .with_context(|| format!("guest printed no {key}= line:\n{stderr}"))
}

fn section<'a>(stderr: &'a str, name: &str) -> Result<&'a str> {
    stderr
        .split(&format!("=={name}==\n"))
        .nth(1)
        .and_then(|s| s.split("==END==").next())
        .with_context(|| format!("guest printed no =={name}== section"))
}

impl GuestState {
    /// Parses what [`CANARY_PRELUDE`] printed.
    pub fn parse(stderr: &str) -> Result<Self> {
        let procs = section(stderr, "PROCS")?
            .lines()
            .filter_map(|l| {
                let (pid, comm) = l.split_once(' ')?;
                Some((pid.parse().ok()?, comm.trim().to_owned()))
            })
            .collect();
        let modules = section(stderr, "MODULES")?
            .lines()
            .map(|l| l.trim().to_owned())
            .filter(|l| !l.is_empty())
            .collect();
        Ok(Self {
            canary_pid: marker(stderr, "CANARY_PID")?.parse()?,
            listener_pid: marker(stderr, "LISTENER_PID")?.parse()?,
            procs,
            modules,
        })
    }
}

/// The `vol` to run: `AIRF_VOL`, else the pinned venv's, else `vol` on PATH.
pub fn vol_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("AIRF_VOL") {
        return PathBuf::from(p);
    }
    let venv = Path::new("/opt/airf-cache/volatility-venv/bin/vol");
    if venv.exists() {
        return venv.to_path_buf();
    }
    PathBuf::from("vol")
}

/// Runs one plugin with JSON output; `cache` keeps Volatility's symbol cache per test.
pub fn vol_json(
    extra: &[&str],
    symbols: &Path,
    image: &Path,
    plugin: &str,
    cache: &Path,
) -> Result<Vec<serde_json::Value>> {
    std::fs::create_dir_all(cache).with_context(|| format!("creating {}", cache.display()))?;
    let out = Command::new(vol_bin())
        .args(["-q", "-r", "json", "--offline", "--cache-path"])
        .arg(cache)
        .args(extra)
        .arg("-s")
        .arg(symbols)
        .arg("-f")
        .arg(image)
        .arg(plugin)
        .output()
        .with_context(|| {
            format!(
                "running {} (tests/scripts/install-deps.sh installs it)",
                vol_bin().display()
            )
        })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "vol {plugin} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout)
        .with_context(|| format!("vol {plugin} printed no JSON list:\n{stdout}"))?;
    ensure!(
        !rows.is_empty(),
        "vol {plugin} found nothing:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(rows)
}

/// What the plugins found, for the note.
#[derive(Debug)]
pub struct PluginReport {
    /// `PID PPID COMM` lines of linux.pslist.
    pub pslist: Vec<String>,
    pub processes: usize,
    pub modules: usize,
    pub sockets: usize,
}

fn u64_of(row: &serde_json::Value, key: &str) -> Option<u64> {
    row.get(key).and_then(serde_json::Value::as_u64)
}

fn str_of<'a>(row: &'a serde_json::Value, key: &str) -> &'a str {
    row.get(key)
        .and_then(serde_json::Value::as_str)
        .unwrap_or("")
}

/// Runs linux.pslist, linux.lsmod and linux.sockstat (in parallel) on `image` with the tables
/// in `symbols`, and checks each against the guest's own view.
pub fn check_plugins(
    extra: &[&str],
    symbols: &Path,
    image: &Path,
    guest: &GuestState,
    cache: &Path,
) -> Result<PluginReport> {
    let run = |plugin: &'static str| {
        let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        let (symbols, image, cache) = (
            symbols.to_path_buf(),
            image.to_path_buf(),
            cache.to_path_buf(),
        );
        std::thread::spawn(move || {
            let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
            vol_json(&extra, &symbols, &image, plugin, &cache)
        })
    };
    // The first run fills Volatility's symbol cache; the others then share it.
    let pslist = vol_json(extra, symbols, image, "linux.pslist", cache)?;
    let lsmod = run("linux.lsmod");
    let sockstat = run("linux.sockstat");
    let lsmod = lsmod
        .join()
        .map_err(|_| anyhow::anyhow!("lsmod thread panicked"))??;
    let sockstat = sockstat
        .join()
        .map_err(|_| anyhow::anyhow!("sockstat thread panicked"))??;

    // Processes: the canary with its pid and name, and the guest's list give or take the
    // processes that started or ended around the capture (the prelude's own `cat`s, the agent).
    let found: BTreeMap<u64, &str> = pslist
        .iter()
        .filter_map(|r| Some((u64_of(r, "PID")?, str_of(r, "COMM"))))
        .collect();
    ensure!(
        found.get(&u64::from(guest.canary_pid)) == Some(&"airfcanary"),
        "linux.pslist does not list the canary {} airfcanary: {found:?}",
        guest.canary_pid
    );
    // Its start time goes through the boot time Volatility reads from `tk_core`, whose type
    // the table builds by the C layout rules: a wrong layout gives 1970 or a far future.
    let now = time::OffsetDateTime::now_utc().date();
    let today = now.to_string();
    let yesterday = now
        .previous_day()
        .map(|d| d.to_string())
        .unwrap_or_default();
    let canary = pslist
        .iter()
        .find(|r| u64_of(r, "PID") == Some(u64::from(guest.canary_pid)));
    let created = canary.map_or("", |r| str_of(r, "CREATION TIME"));
    ensure!(
        created.starts_with(&today) || created.starts_with(&yesterday),
        "the canary's creation time is {created:?}, not today ({today}): tk_core is misread"
    );
    let mut missing = Vec::new();
    for (pid, comm) in &guest.procs {
        match found.get(&u64::from(*pid)) {
            Some(c) if c == comm => {}
            // The guest's shell execs the agent after listing itself.
            Some(&"airf-agent") if comm == "sh" => {}
            // /proc shows a kernel thread's whole name (task->comm keeps 15 bytes of it) and a
            // workqueue worker's current queue after its name ("kworker/0:0-events").
            Some(c)
                if comm
                    .strip_prefix(c)
                    .is_some_and(|rest| rest.starts_with('-') || c.len() == 15) => {}
            Some(c) => bail!("pid {pid} is {comm:?} in the guest's /proc, {c:?} in linux.pslist"),
            None if comm == "cat" || comm == "cut" || comm == "sh" => {}
            None => missing.push(format!("{pid} {comm}")),
        }
    }
    ensure!(
        missing.is_empty(),
        "processes in the guest's /proc missing from linux.pslist: {missing:?}"
    );
    let pslist_lines = pslist
        .iter()
        .map(|r| {
            format!(
                "{:>5} {:>5} {}",
                u64_of(r, "PID").unwrap_or_default(),
                u64_of(r, "PPID").unwrap_or_default(),
                str_of(r, "COMM")
            )
        })
        .collect();

    // Modules: every module /proc/modules listed.
    let names: BTreeSet<&str> = lsmod.iter().map(|r| str_of(r, "Module Name")).collect();
    let absent: Vec<&String> = guest
        .modules
        .iter()
        .filter(|m| !names.contains(m.as_str()))
        .collect();
    ensure!(
        absent.is_empty() && names.contains("virtio_blk"),
        "linux.lsmod lacks {absent:?} (it lists {names:?})"
    );

    // Sockets: the listener on its port, owned by its pid.
    let listening = sockstat.iter().any(|r| {
        // Volatility renders ports as strings ("-" for none).
        (str_of(r, "Source Port") == LISTEN_PORT.to_string()
            || u64_of(r, "Source Port") == Some(u64::from(LISTEN_PORT)))
            && str_of(r, "State") == "LISTEN"
            && u64_of(r, "PID") == Some(u64::from(guest.listener_pid))
    });
    ensure!(
        listening,
        "linux.sockstat has no LISTEN socket on port {LISTEN_PORT} owned by pid {}: {}",
        guest.listener_pid,
        serde_json::to_string(&sockstat).unwrap_or_default()
    );
    Ok(PluginReport {
        pslist: pslist_lines,
        processes: pslist.len(),
        modules: lsmod.len(),
        sockets: sockstat.len(),
    })
}

/// Checks an ISF `.json.xz` against the JSON schema of the Volatility 3 release installed,
/// for the format version the file declares.
pub fn validate_isf(table: &Path) -> Result<()> {
    let vol = vol_bin();
    let python = vol
        .parent()
        .map(|d| d.join("python3"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("python3"));
    let script = r#"
import json, lzma, os, sys
import jsonschema, volatility3.schemas as s
isf = json.load(lzma.open(sys.argv[1]))
fmt = isf["metadata"]["format"]
schema = json.load(open(os.path.join(os.path.dirname(s.__file__), "schema-" + fmt + ".json")))
jsonschema.validate(isf, schema)
print("valid", fmt)
"#;
    let out = Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(table)
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    ensure!(
        out.status.success(),
        "{} does not validate against Volatility's ISF schema:\n{}{}",
        table.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
