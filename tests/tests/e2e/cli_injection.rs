//! Every command-line option that reaches an object key or a path, fed traversal and injection:
//! each bad value is a usage error (exit 2) that states the rule on stderr and touches nothing:
//! no S3 connection (the endpoint is a listener that counts connections) and no file or
//! directory created. The rules: a case id matches `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`; an S3
//! prefix has no `.`, `..` or empty segment (nor look-alikes of them); sizes are checked before
//! anything starts. Also: the same source given twice, an empty source, and a failed local
//! acquisition that must not leave empty run folders behind.
#![allow(
    clippy::indexing_slicing,
    reason = "serde_json::Value indexing yields Null, it never panics"
)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use airf_e2e::{AgentRun, agent_bin, run_agent};
use anyhow::{Context, Result, ensure};
use serde_json::Value;

/// A TCP listener that counts connections and closes them: an S3 endpoint that proves whether
/// the agent tried to talk to S3 at all.
struct Recorder {
    port: u16,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Recorder {
    fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        listener.set_nonblocking(true)?;
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (n, flag) = (Arc::clone(&connections), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        n.fetch_add(1, Ordering::SeqCst);
                        drop(conn);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Ok(Self {
            port,
            connections,
            stop,
        })
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn count(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The agent with credentials, no instance metadata, and S3 pointed at `endpoint`.
fn agent(endpoint: &str, args: &[String]) -> Result<AgentRun> {
    run_agent(
        Command::new(agent_bin()?)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("AWS_MAX_ATTEMPTS", "1")
            .args(args)
            .args(["--endpoint-url", endpoint]),
    )
}

/// Every path under `dir`, sorted: what "touch nothing" is checked against.
fn tree(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let p = entry?.path();
            if p.is_dir() && !p.is_symlink() {
                todo.push(p.clone());
            }
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

fn s(v: &str) -> String {
    v.to_owned()
}

/// One refused invocation: the arguments, and the option stderr must name.
struct Refused {
    args: Vec<String>,
    names: &'static str,
}

fn refused_cases(src: &str, local: &str) -> Vec<Refused> {
    // Prefix cases go to S3 only: a local `--to` is a path on this machine, where `..` is
    // normal.
    let mut cases = Vec::new();
    let ok_to = s("s3://evidence/ok/");
    let bad_prefixes = [
        "s3://evidence/../x/",
        "s3://evidence/a/../../x/",
        "s3://evidence/..",
        "s3://evidence/./x/",
        "s3://evidence/a/./b/",
        "s3://evidence//x/",
        "s3://evidence/a//b/",
        "s3://evidence/%2e%2e/x/",
        "s3://evidence/a/%2E%2E/b/",
        "s3://evidence/a\nb/",
        "s3://evidence/a\rb/",
        "s3://evidence/a\u{1}b/",
        "s3://evidence/a\u{7f}b/",
        "s3://",
        "s3:///x/",
    ];
    for to in bad_prefixes {
        cases.push(Refused {
            args: vec![s("disk"), s(src), s("--to"), s(to)],
            names: "--to",
        });
        cases.push(Refused {
            args: vec![s("memory"), s("--to"), s(to)],
            names: "--to",
        });
    }
    let long = "a".repeat(129);
    let bad_cases = [
        "../../x",
        "..",
        ".",
        "a/b",
        "a\\b",
        "/abs",
        "\u{e9}t\u{e9}",
        "IR\u{2215}1",
        "a\nb",
        "a\u{1}b",
        "a b",
        "",
        "-x",
        "_x",
        long.as_str(),
    ];
    for case in bad_cases {
        for to in [ok_to.as_str(), local] {
            cases.push(Refused {
                args: vec![
                    s("disk"),
                    s(src),
                    s("--to"),
                    s(to),
                    format!("--case={case}"),
                ],
                names: "--case",
            });
        }
        // `memory` only towards S3 (the recorder): an agent that accepted the case id would
        // otherwise start copying this machine's memory into a local directory.
        cases.push(Refused {
            args: vec![
                s("memory"),
                s("--to"),
                ok_to.clone(),
                format!("--case={case}"),
            ],
            names: "--case",
        });
    }
    for size in ["0", "1", "6144GiB", "5GiB1"] {
        for cmd in ["disk", "memory"] {
            let mut args = vec![s(cmd)];
            if cmd == "disk" {
                args.push(s(src));
            }
            args.extend([s("--to"), ok_to.clone(), s("--part-size"), s(size)]);
            cases.push(Refused {
                args,
                names: "--part-size",
            });
        }
    }
    for to in [ok_to.as_str(), local] {
        cases.push(Refused {
            args: vec![
                s("disk"),
                s(src),
                s("--to"),
                s(to),
                s("--frame-size"),
                s("0"),
            ],
            names: "--frame-size",
        });
    }
    cases.push(Refused {
        args: vec![
            s("memory"),
            s("--to"),
            ok_to.clone(),
            s("--frame-size"),
            s("0"),
        ],
        names: "--frame-size",
    });
    for manifest in [
        "s3://",
        "s3://evidence",
        "s3://evidence/",
        "s3:///x.manifest.json",
        "s3://evidence/../x.manifest.json",
        "s3://evidence//x.manifest.json",
        "s3://evidence/a/./x.manifest.json",
    ] {
        cases.push(Refused {
            args: vec![s("verify"), s(manifest)],
            names: "s3://",
        });
    }
    cases
}

#[test]
fn options_reaching_keys_or_paths_refuse_traversal_and_touch_nothing() -> Result<()> {
    let tmp = tempfile::Builder::new().prefix("airf-cli-").tempdir()?;
    let src = tmp.path().join("src.img");
    std::fs::write(&src, vec![0x5au8; 64 << 10])?;
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work)?;
    let local = work.join("out").display().to_string();
    let recorder = Recorder::start()?;
    let before = tree(tmp.path())?;
    let mut wrong = Vec::new();
    let cases = refused_cases(&src.display().to_string(), &local);
    for case in &cases {
        let run = agent(&recorder.endpoint(), &case.args)?;
        let mut problems = Vec::new();
        if run.code != 2 {
            problems.push(format!("exit {} (not 2)", run.code));
        }
        if !run.stderr.contains(case.names) {
            problems.push(format!("stderr does not name {}", case.names));
        }
        if recorder.count() > 0 {
            problems.push(format!("{} S3 connection(s)", recorder.count()));
        }
        let after = tree(tmp.path())?;
        if after != before {
            let new: Vec<_> = after.iter().filter(|p| !before.contains(p)).collect();
            problems.push(format!("created {new:?}"));
            for p in new.iter().rev() {
                let _ = std::fs::remove_file(p).or_else(|_| std::fs::remove_dir(p));
            }
        }
        recorder.connections.store(0, Ordering::SeqCst);
        if !problems.is_empty() {
            wrong.push(format!(
                "{:?}: {}\n    stderr: {}",
                case.args,
                problems.join("; "),
                run.stderr.trim().replace('\n', "\n            ")
            ));
        }
    }
    ensure!(
        wrong.is_empty(),
        "{} of {} refusals went wrong:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );

    // The checks can fail: a valid case id of 128 characters reaches S3 (here: the recorder),
    // and a valid run to a local directory creates its folder.
    let max = "A".repeat(128);
    let run = agent(
        &recorder.endpoint(),
        &[
            s("disk"),
            src.display().to_string(),
            s("--to"),
            s("s3://evidence/ok/"),
            format!("--case={max}"),
        ],
    )?;
    ensure!(
        run.code != 2 && recorder.count() > 0,
        "a 128-character case id is valid: exit {}, {} connection(s)\n{}",
        run.code,
        recorder.count(),
        run.stderr
    );
    let run = agent(
        &recorder.endpoint(),
        &[
            s("disk"),
            src.display().to_string(),
            s("--to"),
            local.clone(),
            s("--case=IR-2026.0013_b"),
        ],
    )?;
    ensure!(run.code == 0, "{run:?}");
    ensure!(
        tree(tmp.path())? != before,
        "the control run created nothing"
    );
    Ok(())
}

/// Image files (`*.zst`, final or partial) under `dir`.
fn images(dir: &Path) -> Result<Vec<PathBuf>> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    Ok(tree(dir)?
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".zst"))
        .collect())
}

#[test]
fn the_same_source_twice_is_acquired_once_or_refused() -> Result<()> {
    let tmp = tempfile::Builder::new().prefix("airf-cli-").tempdir()?;
    let sub = tmp.path().join("sub");
    std::fs::create_dir_all(&sub)?;
    let src = sub.join("disk.img");
    std::fs::write(&src, vec![7u8; 256 << 10])?;
    let spellings = [
        (src.display().to_string(), src.display().to_string()),
        (
            src.display().to_string(),
            sub.join("..")
                .join("sub")
                .join("disk.img")
                .display()
                .to_string(),
        ),
    ];
    for (i, (a, b)) in spellings.iter().enumerate() {
        let out = tmp.path().join(format!("out{i}"));
        let run = agent(
            "http://127.0.0.1:9",
            &[
                s("disk"),
                a.clone(),
                b.clone(),
                s("--to"),
                out.display().to_string(),
                s("--case=TWICE"),
            ],
        )?;
        let found = images(&out)?;
        match run.code {
            2 => ensure!(found.is_empty(), "{a} {b}: refused, yet stored {found:?}"),
            0 => ensure!(
                found.len() == 1,
                "{a} {b}: one source, {} images: {found:?}\n{}",
                found.len(),
                run.stdout
            ),
            other => anyhow::bail!("{a} {b}: exit {other}\n{}", run.stderr),
        }
    }
    Ok(())
}

/// Every string under a key containing "warning", anywhere in `v`.
fn warnings(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k.to_ascii_lowercase().contains("warning") {
                    match x {
                        Value::String(t) => out.push(t.clone()),
                        Value::Array(a) => out.extend(a.iter().map(ToString::to_string)),
                        other => out.push(other.to_string()),
                    }
                }
                out.extend(warnings(x));
            }
        }
        Value::Array(a) => a.iter().for_each(|x| out.extend(warnings(x))),
        _ => {}
    }
    out
}

fn warns_empty(v: &Value) -> bool {
    warnings(v).iter().any(|w| {
        let w = w.to_ascii_lowercase();
        w.contains("empty") || w.contains("zero bytes") || w.contains("0 bytes")
    })
}

#[test]
fn an_empty_source_completes_with_a_warning() -> Result<()> {
    let tmp = tempfile::Builder::new().prefix("airf-cli-").tempdir()?;
    let src = tmp.path().join("blank.bin");
    std::fs::write(&src, b"")?;
    let out = tmp.path().join("out");
    let run = agent(
        "http://127.0.0.1:9",
        &[
            s("disk"),
            src.display().to_string(),
            s("--to"),
            out.display().to_string(),
            s("--case=BLANK"),
            s("--json"),
        ],
    )?;
    ensure!(run.code == 0 && run.json["status"] == "complete", "{run:?}");
    ensure!(
        warns_empty(&run.json),
        "the result does not warn that the source is empty:\n{}",
        run.stdout
    );
    let manifest = run.json["sources"][0]["manifest"]["location"]
        .as_str()
        .context("no manifest")?;
    let manifest: Value = serde_json::from_slice(&std::fs::read(manifest)?)?;
    ensure!(
        warns_empty(&manifest),
        "the manifest does not warn that the source is empty:\n{manifest:#}"
    );
    Ok(())
}

/// A tmpfs mount, unmounted on drop.
struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).output();
    }
}

/// A local destination that fills up mid-image: the run fails, and removes the run folders it
/// made (`<case>/<host>/<run>/`), leaving the destination as it found it.
#[test]
fn failed_local_acquisition_leaves_no_empty_folders_root() -> Result<()> {
    ensure!(
        nix::unistd::geteuid().is_root(),
        "this test mounts a 4 MiB tmpfs: run it as root (tests/run.sh does)"
    );
    let tmp = tempfile::Builder::new().prefix("airf-cli-").tempdir()?;
    let small = tmp.path().join("small");
    std::fs::create_dir_all(&small)?;
    airf_e2e::run_ok(
        Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
            .arg(&small),
    )?;
    let _mount = Tmpfs(small.clone());
    let out = small.join("out");
    std::fs::create_dir_all(&out)?;
    let src = tmp.path().join("big.img");
    let mut bytes = vec![0u8; 16 << 20];
    airf_e2e::fault_proxy::SplitMix64(42).fill(&mut bytes);
    std::fs::write(&src, &bytes)?;
    let run = agent(
        "http://127.0.0.1:9",
        &[
            s("disk"),
            src.display().to_string(),
            s("--to"),
            out.display().to_string(),
            s("--case=FULL"),
            s("--json"),
        ],
    )?;
    ensure!(
        run.code == 1 && run.json["status"] == "failed",
        "a full destination must fail the run: {run:?}"
    );
    let left = tree(&out)?;
    ensure!(
        left.is_empty(),
        "the failed run left {left:?} in {}",
        out.display()
    );
    Ok(())
}
