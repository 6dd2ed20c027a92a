//! The agent against an S3 that misbehaves: Garage behind `airf_e2e::fault_proxy`, which drops
//! connections, delays answers, answers 503 SlowDown, loses the answers to Create, Complete and
//! the manifest PUT after the server acted on them, holds an answer while the agent is signalled,
//! and takes the server down for 20 s.
//!
//! Whatever happens, a run must leave one coherent record:
//! - either it exits 0 (or 3) and `airf-agent verify` of the manifest it reports says INTACT;
//! - or it fails, and nothing stored claims completeness (no manifest unless the result reports
//!   that source complete), and every object and open multipart upload left under the run's
//!   prefix (listed from Garage directly, past the proxy) is named in the JSON result.
//!
//! `seeded_fault_sweep_…` runs `AIRF_FAULT_RUNS` acquisitions (default 24) with seeds from
//! `AIRF_FAULT_SEED` on, and writes its table to `target/fault-runs.txt`.
#![allow(
    clippy::indexing_slicing,
    reason = "serde_json::Value indexing yields Null, it never panics"
)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use airf_e2e::fault_proxy::{Fault, FaultProxy, Kind, Plan, RandomFaults, Rule, SplitMix64};
use airf_e2e::{AgentRun, S3Server, ServerKind, agent_bin, repo_root, run_agent, sha256_file};
use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

const CASE: &str = "IR-2026-0013";

/// A source file of `len` bytes from `seed` (incompressible), in its own directory.
struct Source {
    _dir: tempfile::TempDir,
    path: PathBuf,
    sha256: String,
}

fn source(seed: u64, len: usize, name: &str) -> Result<Source> {
    let dir = tempfile::Builder::new().prefix("airf-faults-").tempdir()?;
    let path = dir.path().join(name);
    let mut bytes = vec![0u8; len];
    SplitMix64(seed).fill(&mut bytes);
    std::fs::write(&path, &bytes)?;
    let sha256 = sha256_file(&path)?;
    Ok(Source {
        _dir: dir,
        path,
        sha256,
    })
}

/// 12 MiB of random data: three 5 MiB parts.
const SOURCE_LEN: usize = 12 << 20;

/// `airf-agent disk` through `endpoint` (the proxy), into `s3://<bucket>/<prefix>/`.
fn disk_command(server: &S3Server, endpoint: &str, src: &Path, prefix: &str) -> Result<Command> {
    let mut cmd = server.command(agent_bin()?);
    cmd.env("AWS_ENDPOINT_URL", endpoint)
        .arg("disk")
        .arg(src)
        .args([
            "--to",
            &format!("s3://{}/{prefix}/", server.bucket),
            "--case",
            CASE,
            "--endpoint-url",
            endpoint,
            "--part-size",
            "5MiB",
            "--frame-size",
            "256KiB",
            "--concurrency",
            "1",
            "--threads",
            "1",
            "--abort-timeout",
            "60",
            "--json",
            "--no-progress",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    Ok(cmd)
}

/// Runs a started agent to its end, killing it after `limit`.
fn finish_within(child: std::process::Child, limit: Duration) -> Result<AgentRun> {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id())?);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => Ok(AgentRun::from_output(&out?)),
        Err(_) => {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            bail!("the agent did not finish within {limit:?}")
        }
    }
}

/// What Garage holds under a prefix, asked directly (not through the proxy).
#[derive(Debug)]
struct Stored {
    objects: Vec<String>,
    uploads: Vec<(String, String)>,
}

fn stored(server: &S3Server, prefix: &str) -> Result<Stored> {
    Ok(Stored {
        objects: server.keys(&format!("{prefix}/"))?,
        uploads: server.open_uploads_under(&format!("{prefix}/"))?,
    })
}

impl Stored {
    fn manifests(&self) -> Vec<&String> {
        self.objects
            .iter()
            .filter(|k| k.ends_with(".manifest.json"))
            .collect()
    }
}

/// The s3:// URI of the manifest the run reports for its first source.
fn reported_manifest(run: &AgentRun) -> Option<String> {
    run.json
        .get("sources")?
        .get(0)?
        .get("manifest")?
        .get("location")?
        .as_str()
        .map(str::to_owned)
}

/// The run folder the result names (`folder`, or `evidence_folder` in older results).
fn reported_folder(run: &AgentRun) -> Option<String> {
    ["folder", "evidence_folder"]
        .iter()
        .find_map(|f| run.json.get(f).and_then(Value::as_str))
        .filter(|f| !f.is_empty())
        .map(str::to_owned)
}

/// `airf-agent verify` of `uri`, straight to Garage: Ok when INTACT.
fn verify_intact(server: &S3Server, uri: &str) -> Result<()> {
    let v = run_agent(server.command(agent_bin()?).args(["verify", uri, "--json"]))?;
    ensure!(
        v.code == 0 && v.json["status"] == "intact",
        "verify {uri}: exit {}, {}\n{}",
        v.code,
        v.stdout,
        v.stderr
    );
    Ok(())
}

fn is_complete(status: &Value) -> bool {
    status == "complete" || status == "completed_with_read_errors"
}

/// Checks the invariant every faulted run must keep, and says what the run ended as.
///
/// `proxy` (when given) adds what a listing cannot show: an upload the server created that the
/// agent neither completed nor aborted must be named in the result too.
fn check_record(
    server: &S3Server,
    prefix: &str,
    run: &AgentRun,
    proxy: Option<&FaultProxy>,
) -> Result<String> {
    ensure!(
        run.json.is_object(),
        "no JSON result (exit {}):\n{}\n{}",
        run.code,
        run.stdout,
        run.stderr
    );
    let st = stored(server, prefix)?;
    let named = |s: &str| run.stdout.contains(s);
    let mut problems = Vec::new();

    // A manifest claims its image is complete: only a source reported complete may have one.
    let sources = run.json["sources"].as_array().cloned().unwrap_or_default();
    for m in st.manifests() {
        let claimed = sources.iter().any(|s| {
            is_complete(&s["status"]) && s["manifest"]["key"].as_str() == Some(m.as_str())
        });
        if !claimed {
            problems.push(format!(
                "manifest {m} is stored, but the result does not report its source complete"
            ));
        }
    }
    // Every leftover is named; the stored result must say what stdout says.
    for key in &st.objects {
        if key.ends_with("/result.json") {
            let stored_result: Value = serde_json::from_slice(&server.get(key)?)
                .with_context(|| format!("{key} is not JSON"))?;
            if stored_result["status"] != run.json["status"]
                || stored_result["exit_code"] != run.json["exit_code"]
            {
                problems.push(format!(
                    "{key} says {} (exit {}) but the run printed {} (exit {})",
                    stored_result["status"],
                    stored_result["exit_code"],
                    run.json["status"],
                    run.json["exit_code"]
                ));
            }
            continue;
        }
        let uri = format!("s3://{}/{key}", server.bucket);
        if !named(&uri) {
            problems.push(format!("{uri} is stored but the result does not name it"));
        }
    }
    for (key, id) in &st.uploads {
        if !named(id) {
            problems.push(format!(
                "multipart upload {id} of {key} is open but the result does not name it"
            ));
        }
    }
    if let Some(p) = proxy {
        for id in p.unresolved_uploads() {
            if !named(&id) {
                problems.push(format!(
                    "multipart upload {id} was created (through the proxy), never completed nor aborted, and the result does not name it"
                ));
            }
        }
    }

    let outcome = match run.code {
        0 | 3 => {
            if !is_complete(&run.json["status"]) {
                problems.push(format!(
                    "exit {} with status {}",
                    run.code, run.json["status"]
                ));
            }
            match reported_manifest(run) {
                Some(uri) => {
                    if let Err(e) = verify_intact(server, &uri) {
                        problems.push(format!("{e:#}"));
                    }
                }
                None => problems.push(format!("exit {} but no manifest reported", run.code)),
            }
            "complete, verify INTACT".to_owned()
        }
        1 | 143 | 130 => {
            if is_complete(&run.json["status"]) {
                problems.push(format!(
                    "exit {} with status {}",
                    run.code, run.json["status"]
                ));
            }
            let status = run.json["status"].as_str().unwrap_or("no status");
            if st.objects.is_empty() && st.uploads.is_empty() {
                format!("{status} (exit {}), nothing left", run.code)
            } else {
                format!(
                    "{status} (exit {}), leftovers named: {} object(s), {} upload(s)",
                    run.code,
                    st.objects.len(),
                    st.uploads.len()
                )
            }
        }
        other => {
            problems.push(format!("unexpected exit {other}"));
            format!("exit {other}")
        }
    };
    ensure!(
        problems.is_empty(),
        "{}\nstored under {prefix}/: {:?}\nresult:\n{}\nstderr:\n{}",
        problems.join("\n"),
        st,
        run.stdout,
        run.stderr
    );
    Ok(outcome)
}

/// One acquisition of a fresh 12 MiB source through a proxy with `rules`.
fn through_proxy(
    server: &S3Server,
    prefix: &str,
    rules: Vec<Rule>,
) -> Result<(AgentRun, FaultProxy, Source)> {
    let proxy = FaultProxy::start(
        server.port()?,
        Plan {
            script: rules,
            random: None,
            gated: false,
        },
    )?;
    let src = source(0x5eed_0013, SOURCE_LEN, "evidence.img")?;
    let child = disk_command(server, &proxy.endpoint(), &src.path, prefix)?.spawn()?;
    let run = finish_within(child, Duration::from_secs(240))?;
    Ok((run, proxy, src))
}

/// The run completed, its manifest verifies, and the manifest describes this source.
fn ensure_complete(
    server: &S3Server,
    prefix: &str,
    run: &AgentRun,
    proxy: &FaultProxy,
    src: &Source,
) -> Result<()> {
    let outcome = check_record(server, prefix, run, Some(proxy))
        .with_context(|| format!("proxy log:\n{}", proxy.log_text()))?;
    ensure!(
        run.code == 0,
        "expected a complete run, got {outcome}:\n{}\n{}\nproxy log:\n{}",
        run.stdout,
        run.stderr,
        proxy.log_text()
    );
    let manifest_key = run.json["sources"][0]["manifest"]["key"]
        .as_str()
        .context("manifest key")?;
    let manifest: Value = serde_json::from_slice(&server.get(manifest_key)?)?;
    ensure!(
        manifest["raw"]["sha256"] == src.sha256.as_str(),
        "the manifest describes another source"
    );
    let st = stored(server, prefix)?;
    ensure!(
        st.manifests().len() == 1 && st.uploads.is_empty(),
        "one manifest and no open upload expected: {st:?}"
    );
    Ok(())
}

#[test]
fn lost_create_response_completes_and_aborts_the_extra_upload() -> Result<()> {
    let server = S3Server::start(ServerKind::Garage)?;
    let (run, proxy, src) = through_proxy(
        &server,
        "lost-create",
        vec![Rule::nth(Kind::CreateUpload, 1, Fault::LostResponse)],
    )?;
    ensure!(
        proxy.created_uploads().len() >= 2,
        "the lost answer should have made the SDK create a second upload:\n{}",
        proxy.log_text()
    );
    ensure_complete(&server, "lost-create", &run, &proxy, &src)?;
    let unresolved = proxy.unresolved_uploads();
    ensure!(
        unresolved.is_empty(),
        "uploads created and never completed nor aborted: {unresolved:?}\n{}",
        proxy.log_text()
    );
    Ok(())
}

#[test]
fn lost_complete_response_still_completes() -> Result<()> {
    let server = S3Server::start(ServerKind::Garage)?;
    let (run, proxy, src) = through_proxy(
        &server,
        "lost-complete",
        vec![Rule::nth(Kind::CompleteUpload, 1, Fault::LostResponse)],
    )?;
    ensure!(
        proxy.log().iter().any(|e| e.kind == Kind::CompleteUpload
            && e.fault == Some(Fault::LostResponse)
            && e.status == Some(200)),
        "Complete should have succeeded on the server with its answer lost:\n{}",
        proxy.log_text()
    );
    ensure_complete(&server, "lost-complete", &run, &proxy, &src)
}

#[test]
fn lost_manifest_response_still_completes_with_one_manifest() -> Result<()> {
    let server = S3Server::start(ServerKind::Garage)?;
    let (run, proxy, src) = through_proxy(
        &server,
        "lost-manifest",
        vec![Rule::nth(Kind::PutManifest, 1, Fault::LostResponse)],
    )?;
    ensure!(
        proxy.log().iter().any(|e| e.kind == Kind::PutManifest
            && e.fault == Some(Fault::LostResponse)
            && e.status == Some(200)),
        "the manifest should have been stored with its answer lost:\n{}",
        proxy.log_text()
    );
    ensure_complete(&server, "lost-manifest", &run, &proxy, &src)
}

#[test]
fn slow_down_503s_are_retried() -> Result<()> {
    let server = S3Server::start(ServerKind::Garage)?;
    let rules = [
        Kind::CreateUpload,
        Kind::UploadPart,
        Kind::CompleteUpload,
        Kind::PutManifest,
    ]
    .into_iter()
    .map(|k| Rule::first(k, 2, Fault::SlowDown))
    .collect();
    let (run, proxy, src) = through_proxy(&server, "slowdown", rules)?;
    ensure!(proxy.faults().len() == 8, "{}", proxy.log_text());
    ensure_complete(&server, "slowdown", &run, &proxy, &src)
}

#[test]
fn connections_dropped_before_forwarding_are_retried() -> Result<()> {
    let server = S3Server::start(ServerKind::Garage)?;
    let rules = [
        Kind::CreateUpload,
        Kind::UploadPart,
        Kind::CompleteUpload,
        Kind::PutManifest,
        Kind::PutObject,
    ]
    .into_iter()
    .map(|k| Rule::nth(k, 1, Fault::Drop))
    .collect();
    let (run, proxy, src) = through_proxy(&server, "drop", rules)?;
    ensure!(proxy.faults().len() >= 4, "{}", proxy.log_text());
    ensure_complete(&server, "drop", &run, &proxy, &src)
}

#[test]
fn delayed_responses_are_waited_for() -> Result<()> {
    let server = S3Server::start(ServerKind::Garage)?;
    let rules = vec![
        Rule::nth(
            Kind::CreateUpload,
            1,
            Fault::Delay(Duration::from_millis(200)),
        ),
        Rule::nth(Kind::UploadPart, 2, Fault::Delay(Duration::from_secs(3))),
        Rule::nth(
            Kind::CompleteUpload,
            1,
            Fault::Delay(Duration::from_secs(2)),
        ),
        Rule::nth(Kind::PutManifest, 1, Fault::Delay(Duration::from_secs(1))),
    ];
    let (run, proxy, src) = through_proxy(&server, "delay", rules)?;
    ensure!(proxy.faults().len() == 4, "{}", proxy.log_text());
    ensure_complete(&server, "delay", &run, &proxy, &src)
}

/// The SDK makes 5 attempts with exponential backoff (about 1+2+4+8 s at most): a 20 s outage
/// outlasts them. The run must then fail cleanly (the abort is retried past the outage), or
/// complete; both are allowed, the test prints which.
#[test]
fn server_down_20s_mid_upload_completes_or_fails_cleanly() -> Result<()> {
    let server = S3Server::start(ServerKind::Garage)?;
    let started = Instant::now();
    let (run, proxy, _src) = through_proxy(
        &server,
        "down",
        vec![Rule::nth(
            Kind::UploadPart,
            2,
            Fault::Down(Duration::from_secs(20)),
        )],
    )?;
    ensure!(
        proxy.refused() > 0,
        "the agent never met the outage:\n{}",
        proxy.log_text()
    );
    let outcome = check_record(&server, "down", &run, Some(&proxy))
        .with_context(|| format!("proxy log:\n{}", proxy.log_text()))?;
    eprintln!(
        "server down 20 s mid-upload: {outcome} after {:.1} s; {} connection(s) refused",
        started.elapsed().as_secs_f64(),
        proxy.refused()
    );
    if run.code != 0 {
        ensure!(
            run.code == 1 && run.json["status"] == "failed",
            "{}",
            run.stdout
        );
        let st = stored(&server, "down")?;
        ensure!(
            st.uploads.is_empty() && st.manifests().is_empty(),
            "a failed run must abort its upload once the server is back: {st:?}"
        );
    }
    Ok(())
}

/// A SIGTERM while the proxy holds the answer to a request of `kind`, then the answer is let
/// through: the exit status, the result and what is stored must agree.
fn sigterm_while_held(
    kind: Kind,
    nth: usize,
    prefix: &str,
    source_len: usize,
) -> Result<(AgentRun, Stored)> {
    let server = S3Server::start(ServerKind::Garage)?;
    let proxy = FaultProxy::start(
        server.port()?,
        Plan {
            script: vec![Rule::nth(kind, nth, Fault::Hold)],
            random: None,
            gated: false,
        },
    )?;
    let src = source(0x5157_e4a1, source_len, "evidence.img")?;
    let child = disk_command(&server, &proxy.endpoint(), &src.path, prefix)?.spawn()?;
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id())?);
    proxy
        .wait_held(Duration::from_secs(120))
        .with_context(|| proxy.log_text())?;
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
    // Let the agent see the signal while the answer is still held.
    std::thread::sleep(Duration::from_millis(500));
    proxy.release();
    let run = finish_within(child, Duration::from_secs(180))?;
    let st = stored(&server, prefix)?;
    let outcome = check_record(&server, prefix, &run, Some(&proxy))
        .with_context(|| format!("proxy log:\n{}", proxy.log_text()))?;
    eprintln!("SIGTERM while {kind}#{nth} was held: {outcome}");
    if st.manifests().is_empty() {
        ensure!(
            run.code == 143 && run.json["status"] == "interrupted",
            "no manifest stored, so the run is interrupted (143): exit {}\n{}",
            run.code,
            run.stdout
        );
    } else {
        ensure!(
            run.code == 0 && run.json["status"] == "complete",
            "the manifest is stored ({:?}), so the source is complete (exit 0): exit {}\n{}\n{}",
            st.manifests(),
            run.code,
            run.stdout,
            run.stderr
        );
    }
    Ok((run, st))
}

/// 40 MiB: with part 2 held and one part in flight, the reader is still far from the end when
/// the signal comes, so the run is interrupted for real.
#[test]
fn sigterm_during_upload_interrupts_and_claims_nothing() -> Result<()> {
    let (run, st) = sigterm_while_held(Kind::UploadPart, 2, "term-part", 40 << 20)?;
    ensure!(run.code == 143, "{}", run.stdout);
    ensure!(st.uploads.is_empty(), "{st:?}");
    Ok(())
}

#[test]
fn sigterm_while_complete_is_answered_agrees_with_what_is_stored() -> Result<()> {
    sigterm_while_held(Kind::CompleteUpload, 1, "term-complete", SOURCE_LEN).map(|_| ())
}

#[test]
fn sigterm_while_manifest_put_is_answered_reports_complete() -> Result<()> {
    let (run, st) = sigterm_while_held(Kind::PutManifest, 1, "term-manifest", SOURCE_LEN)?;
    ensure!(
        !st.manifests().is_empty() && run.code == 0,
        "the held manifest PUT reached the server: {st:?}"
    );
    Ok(())
}

/// Two acquisitions of different files with the same name and case, started in the same
/// second: both complete, both verify, two run folders, nothing overwritten.
///
/// Sequential: the second run's requests wait at a gated proxy until the first run has exited,
/// so it stores everything after the first is done, from a folder name chosen in the same
/// second. Concurrent: both go straight to Garage at once.
fn two_runs_keep_both(concurrent: bool, prefix: &str) -> Result<()> {
    let server = S3Server::start(ServerKind::Garage)?;
    let sources = [
        source(1, 1 << 20, "evidence.img")?,
        source(2, 1 << 20, "evidence.img")?,
    ];
    let direct = server.endpoint()?;
    let gate = FaultProxy::start(
        server.port()?,
        Plan {
            gated: !concurrent,
            ..Plan::default()
        },
    )?;
    let second = if concurrent {
        direct.clone()
    } else {
        gate.endpoint()
    };
    // Start early in a second, so both runs name their folder in the same one.
    let sub = time::OffsetDateTime::now_utc().nanosecond();
    std::thread::sleep(Duration::from_nanos(
        u64::from(1_000_000_000u32.saturating_sub(sub)) + 20_000_000,
    ));
    let first = disk_command(&server, &direct, &sources[0].path, prefix)?.spawn()?;
    let later = disk_command(&server, &second, &sources[1].path, prefix)?.spawn()?;
    let first = finish_within(first, Duration::from_secs(120))?;
    gate.release();
    let later = finish_within(later, Duration::from_secs(120))?;
    let runs = [first, later];

    let mut folders = Vec::new();
    for (run, src) in runs.iter().zip(&sources) {
        ensure!(
            run.code == 0 && run.json["status"] == "complete",
            "both runs must complete: exit {}\n{}\n{}",
            run.code,
            run.stdout,
            run.stderr
        );
        folders.push(reported_folder(run).context("the result names no run folder")?);
        let uri = reported_manifest(run).context("no manifest reported")?;
        verify_intact(&server, &uri)?;
        let key = run.json["sources"][0]["manifest"]["key"]
            .as_str()
            .context("manifest key")?;
        let manifest: Value = serde_json::from_slice(&server.get(key)?)?;
        ensure!(
            manifest["raw"]["sha256"] == src.sha256.as_str(),
            "{key} no longer describes the source that stored it: overwritten"
        );
    }
    ensure!(
        folders.first() != folders.get(1),
        "both runs used the run folder {folders:?}"
    );
    // The collision this test is about needs both folders named in one second.
    let second_of = regex::Regex::new(r"\d{8}T\d{6}Z")?;
    let stamps: Vec<_> = folders
        .iter()
        .filter_map(|f| second_of.find(f).map(|m| m.as_str().to_owned()))
        .collect();
    ensure!(
        stamps.len() != 2 || stamps.first() == stamps.get(1),
        "the runs started in different seconds ({stamps:?}): this machine is too slow for the test"
    );
    let st = stored(&server, prefix)?;
    let images = st
        .objects
        .iter()
        .filter(|k| k.ends_with(".raw.zst"))
        .count();
    ensure!(
        images == 2 && st.manifests().len() == 2,
        "two images and two manifests expected: {st:?}"
    );
    Ok(())
}

#[test]
fn same_case_and_name_sequential_runs_both_kept() -> Result<()> {
    two_runs_keep_both(false, "twins-seq")
}

#[test]
fn same_case_and_name_concurrent_runs_both_kept() -> Result<()> {
    two_runs_keep_both(true, "twins-par")
}

fn env_u64(name: &str, default: u64) -> Result<u64> {
    match std::env::var(name) {
        Ok(v) => {
            let v = v.trim();
            let parsed = match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => v.parse(),
            };
            parsed.with_context(|| format!("{name}={v:?} is not a number"))
        }
        Err(_) => Ok(default),
    }
}

/// Runs `AIRF_FAULT_RUNS` acquisitions, each through a proxy with random faults from its own
/// seed (`AIRF_FAULT_SEED` + i) at one of three rates, and checks every run's record. The table
/// (seed, rate, faults, outcome) is printed and written to `target/fault-runs.txt`; the test
/// fails after the table when any run broke the invariant.
#[test]
fn seeded_fault_sweep_leaves_one_coherent_record_per_run() -> Result<()> {
    let runs = env_u64("AIRF_FAULT_RUNS", 24)?;
    let base = env_u64("AIRF_FAULT_SEED", 0x13_0000)?;
    let server = S3Server::start(ServerKind::Garage)?;
    let started = Instant::now();
    let mut table = vec![format!(
        "# fault sweep: {runs} runs from seed {base:#x}; 12 MiB random source, 5 MiB parts, through tests/src/fault_proxy.rs"
    )];
    let mut failures = Vec::new();
    let mut outcomes: Vec<(String, u64)> = Vec::new();
    for i in 0..runs {
        let seed = base + i;
        let per_mille = [150, 300, 500][usize::try_from(i % 3)?];
        let proxy = FaultProxy::start(
            server.port()?,
            Plan {
                script: Vec::new(),
                gated: false,
                random: Some(RandomFaults {
                    seed,
                    per_mille,
                    down: Some(Duration::from_secs(4)),
                    max_delay: Duration::from_millis(1500),
                }),
            },
        )?;
        let src = source(seed, SOURCE_LEN, "evidence.img")?;
        let prefix = format!("sweep/{seed:x}");
        let t = Instant::now();
        let run = disk_command(&server, &proxy.endpoint(), &src.path, &prefix)?
            .spawn()
            .map_err(anyhow::Error::from)
            .and_then(|c| finish_within(c, Duration::from_secs(240)));
        let faults: Vec<String> = proxy
            .faults()
            .iter()
            .map(|e| {
                format!(
                    "{}#{} {}",
                    e.kind,
                    e.nth,
                    e.fault.map(|f| f.to_string()).unwrap_or_default()
                )
            })
            .collect();
        let verdict = run.and_then(|r| check_record(&server, &prefix, &r, Some(&proxy)));
        let (outcome, ok) = match verdict {
            Ok(o) => (o, true),
            Err(e) => {
                failures.push(format!(
                    "seed {seed:#x}: {e:#}\nproxy log:\n{}",
                    proxy.log_text()
                ));
                let text = format!("{e:#}");
                let first = text.lines().next().unwrap_or("");
                (format!("VIOLATION: {first}"), false)
            }
        };
        let class = if ok {
            outcome.split(',').next().unwrap_or("").to_owned()
        } else {
            "VIOLATION".to_owned()
        };
        match outcomes.iter_mut().find(|(c, _)| *c == class) {
            Some((_, n)) => *n += 1,
            None => outcomes.push((class, 1)),
        }
        table.push(format!(
            "seed {seed:#x} rate {:>2}% {:>5.1}s | {} | {}",
            per_mille / 10,
            t.elapsed().as_secs_f64(),
            if faults.is_empty() {
                "no faults".to_owned()
            } else {
                faults.join(", ")
            },
            outcome
        ));
    }
    table.push(format!(
        "# {runs} runs in {:.0} s: {}",
        started.elapsed().as_secs_f64(),
        outcomes
            .iter()
            .map(|(c, n)| format!("{n} {c}"))
            .collect::<Vec<_>>()
            .join("; ")
    ));
    let text = table.join("\n") + "\n";
    eprintln!("{text}");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    std::fs::create_dir_all(&target)?;
    std::fs::File::create(target.join("fault-runs.txt"))?.write_all(text.as_bytes())?;
    ensure!(
        failures.is_empty(),
        "{} of {runs} runs broke the invariant:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    Ok(())
}
