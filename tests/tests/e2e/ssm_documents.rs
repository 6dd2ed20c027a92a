//! The SSM documents in `ssm-documents/`: their structure and parameter patterns are checked
//! (and linted by cfn-lint inside a CloudFormation template), and their steps are run as SSM
//! Run Command would run them ([`airf_e2e::ssm_run_command`]), the agent under test being the
//! one object in the artifact bucket, against a real Garage with a loop device as the disk.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use airf_e2e::ssm_run_command::{
    Instance, Invocation, STDOUT_LIMIT, Sigterm, allowed_pattern, parameter_reference, parameters,
    references,
};
use airf_e2e::{LoopDevice, S3Server, ServerKind, agent_bin, repo_root, run_agent, sha256_file};
use anyhow::{Context, Result, ensure};
use regex::Regex;
use serde_json::Value;

const DOCUMENTS: &[&str] = &[
    "airf-acquire-memory.json",
    "airf-acquire-disk.json",
    "airf-acquire-all.json",
    "airf-acquire-triage.json",
];

/// Plugins these documents may use.
const KNOWN_ACTIONS: &[&str] = &["aws:runShellScript", "aws:downloadContent"];

/// Where the documents download to: one fixed tmpfs path, so end-to-end runs take turns.
const DOWNLOAD_DIR: &str = "/dev/shm/airf-dl";
static SERIAL: Mutex<()> = Mutex::new(());

/// This test's turn at `DOWNLOAD_DIR`. A test that failed during its turn leaves the lock
/// poisoned, which says nothing about the next test: it takes its turn all the same.
fn take_turn() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Shell metacharacters and path tricks no parameter value may carry.
const PAYLOADS: &[&str] = &[
    ";", "$(id)", "`id`", "\n", "../", " ", "'", "\"", "|", "&", "\r", "\t", "$", "<", ">", "*",
    "\\",
];

fn load(name: &str) -> Result<Value> {
    let path = repo_root().join("ssm-documents").join(name);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

#[expect(
    clippy::indexing_slicing,
    reason = "serde_json::Value indexing yields Null, it never panics"
)]
fn validate(name: &str, doc: &Value) -> Result<()> {
    ensure!(doc["schemaVersion"] == "2.2", "{name}: schemaVersion");
    ensure!(
        doc["description"].as_str().is_some_and(|d| !d.is_empty()),
        "{name}: description"
    );
    let step_name = Regex::new(r"^[A-Za-z0-9_.-]+$")?;
    let steps = doc["mainSteps"].as_array().context("mainSteps")?;
    ensure!(!steps.is_empty(), "{name}: no steps");
    let mut seen = BTreeSet::new();
    for step in steps {
        let action = step["action"].as_str().context("step without action")?;
        ensure!(
            KNOWN_ACTIONS.contains(&action),
            "{name}: unknown action {action}"
        );
        let sname = step["name"].as_str().context("step without name")?;
        ensure!(step_name.is_match(sname), "{name}: step name {sname}");
        ensure!(seen.insert(sname), "{name}: duplicate step {sname}");
        ensure!(
            step["precondition"]["StringEquals"] == serde_json::json!(["platformType", "Linux"]),
            "{name}/{sname}: not limited to Linux"
        );
        let inputs = &step["inputs"];
        match action {
            "aws:runShellScript" => {
                let lines = inputs["runCommand"].as_array().context("runCommand")?;
                ensure!(
                    lines.iter().all(Value::is_string),
                    "{name}/{sname}: runCommand"
                );
                ensure!(
                    inputs["timeoutSeconds"].is_string(),
                    "{name}/{sname}: timeoutSeconds"
                );
            }
            _ => {
                ensure!(inputs["sourceType"] == "S3", "{name}/{sname}: sourceType");
                let info: Value = serde_json::from_str(
                    inputs["sourceInfo"].as_str().context("sourceInfo string")?,
                )?;
                let path = info["path"].as_str().context("sourceInfo.path")?;
                ensure!(
                    path.starts_with("https://{{ ArtifactBucket }}.s3.{{ Region }}.amazonaws.com/"),
                    "{name}/{sname}: {path}"
                );
                let dest = inputs["destinationPath"].as_str().context("destination")?;
                ensure!(
                    dest.starts_with("/dev/shm/"),
                    "{name}/{sname}: downloads outside tmpfs: {dest}"
                );
            }
        }
    }
    // The shell step reads what the download steps wrote.
    let last = steps.last().context("steps")?;
    ensure!(
        last["action"] == "aws:runShellScript",
        "{name}: the last step must run the agent"
    );

    let params = parameters(doc)?;
    let re = parameter_reference()?;
    let mut used = BTreeSet::new();
    references(&doc["mainSteps"], &re, &mut used);
    for r in &used {
        ensure!(
            params.contains_key(r),
            "{name}: {{{{ {r} }}}} is not a parameter"
        );
    }
    for (pname, p) in params {
        ensure!(used.contains(pname), "{name}: parameter {pname} is unused");
        ensure!(p["type"] == "String", "{name}: {pname} type");
        ensure!(
            p["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{name}: {pname} description"
        );
        let re = allowed_pattern(doc, pname)?;
        if let Some(default) = p.get("default") {
            let d = default.as_str().context("default is not a string")?;
            ensure!(
                re.is_match(d),
                "{name}: {pname} default {d:?} fails its own pattern"
            );
        }
    }
    // What must come from the caller has no default; what may be left out defaults to empty.
    for required in [
        "EvidenceBucket",
        "CaseId",
        "Region",
        "ArtifactBucket",
        "AgentVersion",
        "AgentSha256",
    ] {
        ensure!(
            params
                .get(required)
                .is_some_and(|p| p.get("default").is_none()),
            "{name}: {required} must be required (no default)"
        );
    }
    for optional in ["KmsKeyId", "EndpointUrl", "LimeKernelRelease", "LimeSha256"] {
        if let Some(p) = params.get(optional) {
            ensure!(
                p["default"] == "",
                "{name}: {optional} must default to empty"
            );
        }
    }
    let timeout = params
        .get("ExecutionTimeout")
        .and_then(|p| p["default"].as_str())
        .and_then(|t| t.parse::<u64>().ok())
        .context("ExecutionTimeout default")?;
    ensure!(
        (600..=172_800).contains(&timeout),
        "{name}: ExecutionTimeout {timeout}"
    );
    Ok(())
}

#[test]
fn documents_are_well_formed() -> Result<()> {
    for name in DOCUMENTS {
        validate(name, &load(name)?)?;
    }
    // The volatile state first, then memory, then the disks.
    let all = load("airf-acquire-all.json")?;
    let script = shell_text(&all)?;
    let triage = script
        .find("run_agent \"$RUN/triage.json\" triage")
        .context("no triage run")?;
    let mem = script
        .find("run_agent \"$RUN/memory.json\"")
        .context("no memory run")?;
    let disk = script.find("set -- disk").context("no disk run")?;
    ensure!(
        triage < mem && mem < disk,
        "triage, then memory, then disks"
    );
    let params = parameters(&all)?;
    ensure!(params.contains_key("Devices") && params.contains_key("LimeSha256"));
    Ok(())
}

#[expect(
    clippy::indexing_slicing,
    reason = "serde_json::Value indexing yields Null, it never panics"
)]
fn shell_text(doc: &Value) -> Result<String> {
    let mut text = String::new();
    for step in doc["mainSteps"].as_array().context("mainSteps")? {
        if let Some(lines) = step["inputs"]["runCommand"].as_array() {
            for l in lines {
                text.push_str(l.as_str().context("a runCommand line is not a string")?);
                text.push('\n');
            }
        }
    }
    Ok(text)
}

#[test]
fn cfn_lint_accepts_documents() -> Result<()> {
    let dir = tempfile::tempdir()?;
    for name in DOCUMENTS {
        let doc = load(name)?;
        let template = serde_json::json!({
            "AWSTemplateFormatVersion": "2010-09-09",
            "Resources": {
                "Document": {
                    "Type": "AWS::SSM::Document",
                    "Properties": {
                        "DocumentType": "Command",
                        "DocumentFormat": "JSON",
                        "TargetType": "/AWS::EC2::Instance",
                        "Content": doc,
                    }
                }
            }
        });
        let path = dir.path().join(name);
        std::fs::write(&path, serde_json::to_vec_pretty(&template)?)?;
        let out = Command::new("cfn-lint")
            .arg(&path)
            .output()
            .context("cfn-lint (tests/scripts/install-deps.sh installs it)")?;
        ensure!(
            out.status.success(),
            "cfn-lint on {name}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// A valid value for each parameter, to wrap the payloads in.
fn sample(name: &str) -> &'static str {
    match name {
        "EvidenceBucket" | "ArtifactBucket" => "forensics-bucket",
        "EvidencePrefix" => "evidence/ir",
        "CaseId" => "IR-2026-0042",
        "Devices" => "/dev/nvme1n1,/dev/nvme2n1",
        "LimeKernelRelease" => "6.1.0-57-amd64",
        "LimeSha256" | "AgentSha256" => {
            "9f2c000000000000000000000000000000000000000000000000000000000000"
        }
        "KmsKeyId" => "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "Region" => "eu-west-1",
        "AgentVersion" => "0.1.0",
        "EndpointUrl" => "http://127.0.0.1:3900",
        "ExecutionTimeout" => "3600",
        _ => "x",
    }
}

#[test]
fn allowed_patterns_reject_injection() -> Result<()> {
    for name in DOCUMENTS {
        let doc = load(name)?;
        for pname in parameters(&doc)?.keys() {
            let re = allowed_pattern(&doc, pname)?;
            let ok = sample(pname);
            ensure!(re.is_match(ok), "{name}: {pname} rejects {ok:?}");
            for bad in PAYLOADS {
                let mid = ok.len() / 2;
                let (a, b) = ok.split_at(mid);
                for value in [
                    bad.to_string(),
                    format!("{ok}{bad}"),
                    format!("{bad}{ok}"),
                    format!("{a}{bad}{b}"),
                    format!("{ok}{bad}id"),
                ] {
                    ensure!(!re.is_match(&value), "{name}: {pname} accepts {value:?}");
                }
            }
            // Leading dashes could turn a value into an option of the agent.
            ensure!(
                !re.is_match(&format!("-{ok}")),
                "{name}: {pname} accepts a leading dash"
            );
        }
    }
    Ok(())
}

/// Runs `doc` on this machine as SSM Run Command would, with `values` for its parameters and
/// the agent under test as the release it downloads. With `interrupt`, the shell step gets
/// SIGTERM that long after the agent has started.
fn run_document(
    shell: &str,
    server: &S3Server,
    doc: &Value,
    values: &BTreeMap<&str, String>,
    interrupt: Option<Duration>,
) -> Result<Invocation> {
    let value = |name: &str| values.get(name).with_context(|| format!("no {name}"));
    let agent_url = format!(
        "https://{}.s3.{}.amazonaws.com/agent/{}/airf-agent",
        value("ArtifactBucket")?,
        value("Region")?,
        value("AgentVersion")?
    );
    let objects = BTreeMap::from([(agent_url, agent_bin()?)]);
    let instance = Instance {
        shell,
        env: &server.env,
        objects: &objects,
        sigterm: interrupt.map(|after| Sigterm {
            once_running: runs_the_agent,
            after,
        }),
    };
    instance.run(doc, values)
}

/// An `airf-agent` run from one of the documents' tmpfs mounts.
fn runs_the_agent(cmdline: &str) -> bool {
    cmdline.starts_with("/dev/shm/airf-run.") && cmdline.contains("airf-agent")
}

/// Nothing of the run is left on the instance (downloads, agent copies, tmpfs mounts) and no
/// multipart upload is left open in the bucket.
fn ensure_clean(server: &S3Server) -> Result<()> {
    let left = leftovers()?;
    ensure!(left.is_empty(), "left behind: {left:?}");
    ensure!(
        server.open_uploads()?.is_empty(),
        "multipart uploads left open"
    );
    Ok(())
}

/// What the documents leave in /dev/shm or mounted: the download folder, agent copies and
/// their tmpfs mounts.
fn leftovers() -> Result<Vec<String>> {
    let mut left = Vec::new();
    if Path::new(DOWNLOAD_DIR).exists() {
        left.push(DOWNLOAD_DIR.to_owned());
    }
    for e in std::fs::read_dir("/dev/shm")? {
        let name = e?.file_name().to_string_lossy().into_owned();
        if name.starts_with("airf-run.") {
            left.push(format!("/dev/shm/{name}"));
        }
    }
    let mounts = std::fs::read_to_string("/proc/mounts")?;
    left.extend(
        mounts
            .lines()
            .filter(|l| l.contains("/dev/shm/airf-run."))
            .map(str::to_owned),
    );
    Ok(left)
}

fn base_values(server: &S3Server, device: &Path) -> Result<BTreeMap<&'static str, String>> {
    let sha = sha256_file(&agent_bin()?)?;
    Ok(BTreeMap::from([
        ("EvidenceBucket", server.bucket.clone()),
        ("EvidencePrefix", "ssm/e2e".to_owned()),
        ("CaseId", "IR-2026-0042".to_owned()),
        ("Devices", device.display().to_string()),
        ("Region", "garage".to_owned()),
        ("ArtifactBucket", "airf-artifacts".to_owned()),
        ("AgentVersion", "0.1.0".to_owned()),
        ("AgentSha256", sha),
        ("EndpointUrl", server.endpoint()?),
    ]))
}

/// Keeps only the parameters `doc` has.
fn for_doc(
    doc: &Value,
    values: &BTreeMap<&'static str, String>,
) -> Result<BTreeMap<&'static str, String>> {
    let params = parameters(doc)?;
    Ok(values
        .iter()
        .filter(|(k, _)| params.contains_key(**k))
        .map(|(k, v)| (*k, v.clone()))
        .collect())
}

#[expect(
    clippy::indexing_slicing,
    reason = "serde_json::Value indexing yields Null, it never panics"
)]
fn verify_intact(server: &S3Server, manifest_key: &str) -> Result<()> {
    let uri = format!("s3://{}/{manifest_key}", server.bucket);
    let ok =
        run_agent(
            server
                .command(agent_bin()?)
                .args(["verify", &uri, "--json", "--no-progress"]),
        )?;
    ensure!(
        ok.code == 0 && ok.json["status"] == "intact",
        "verify {uri}: {ok:?}"
    );
    Ok(())
}

fn disk() -> Result<LoopDevice> {
    LoopDevice::ext4(
        16,
        &[
            ("etc/passwd", b"root:x:0:0:root:/root:/bin/bash\n"),
            ("tmp/.x/implant", b"\x7fELF not really\n"),
        ],
    )
}

/// Checks one disk result: complete, stored under the prefix and case, intact.
#[expect(
    clippy::indexing_slicing,
    reason = "serde_json::Value indexing yields Null, it never panics"
)]
fn check_disk_result(server: &S3Server, result: &Value, device: &Path) -> Result<()> {
    ensure!(result["status"] == "complete", "{result}");
    let src = &result["sources"][0];
    ensure!(
        src["source"] == device.display().to_string().as_str(),
        "{src}"
    );
    let manifest_key = src["manifest"]["key"].as_str().context("manifest key")?;
    ensure!(
        manifest_key.starts_with("ssm/e2e/IR-2026-0042/"),
        "{manifest_key}"
    );
    let keys = server.keys("ssm/e2e/")?;
    ensure!(
        keys.iter().any(|k| k == manifest_key),
        "manifest not stored: {keys:?}"
    );
    ensure!(
        src["raw_sha256"] == sha256_file(device)?.as_str(),
        "hash differs from the device"
    );
    verify_intact(server, manifest_key)
}

#[test]
fn disk_document_acquires_into_s3() -> Result<()> {
    let _turn = take_turn();
    let server = S3Server::start(ServerKind::Garage)?;
    let dev = disk()?;
    let doc = load("airf-acquire-disk.json")?;
    let values = for_doc(&doc, &base_values(&server, &dev.device)?)?;
    for shell in ["sh", "bash"] {
        let run = run_document(shell, &server, &doc, &values, None)?;
        ensure!(run.code == 0, "{shell}: {run:?}");
        ensure!(
            run.stdout.lines().count() == 1 && run.stdout.len() < STDOUT_LIMIT,
            "{shell}: stdout must be the one JSON line: {run:?}"
        );
        ensure!(run.json["command"] == "disk", "{shell}: {run:?}");
        check_disk_result(&server, &run.json, &dev.device)?;
        ensure_clean(&server).with_context(|| format!("under {shell}"))?;
    }
    Ok(())
}

#[test]
fn wrong_agent_checksum_stops_before_the_agent_runs() -> Result<()> {
    let _turn = take_turn();
    let server = S3Server::start(ServerKind::Garage)?;
    let dev = disk()?;
    for name in DOCUMENTS {
        let doc = load(name)?;
        let mut values = for_doc(&doc, &base_values(&server, &dev.device)?)?;
        values.insert("AgentSha256", "0".repeat(64));
        let run = run_document("sh", &server, &doc, &values, None)?;
        ensure!(run.code != 0, "{name}: {run:?}");
        ensure!(
            run.json["status"] == "failed"
                && run.json["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("SHA-256 mismatch")),
            "{name}: {run:?}"
        );
        ensure!(run.stderr.contains("SHA-256 mismatch"), "{name}: {run:?}");
        let left = leftovers()?;
        ensure!(left.is_empty(), "{name}: left behind: {left:?}");
    }
    ensure!(server.keys("")?.is_empty(), "something was uploaded");
    ensure!(server.open_uploads()?.is_empty(), "an upload was started");
    Ok(())
}

#[test]
fn memory_document_fails_cleanly_without_kcore() -> Result<()> {
    let _turn = take_turn();
    if Path::new("/proc/kcore").exists() {
        // Memory is captured for real in the VM tests; here only the failure path is checked.
        eprintln!("/proc/kcore exists on this host: the failure path is not exercised here");
        return Ok(());
    }
    let server = S3Server::start(ServerKind::Garage)?;
    let dev = disk()?;
    let doc = load("airf-acquire-memory.json")?;
    let values = for_doc(&doc, &base_values(&server, &dev.device)?)?;
    let run = run_document("sh", &server, &doc, &values, None)?;
    ensure!(run.code == 1, "{run:?}");
    ensure!(
        run.json["command"] == "memory" && run.json["status"] == "failed",
        "the agent's JSON must be the last line: {run:?}"
    );
    let left = leftovers()?;
    ensure!(left.is_empty(), "left behind: {left:?}");
    ensure!(
        server
            .keys("ssm/e2e/")?
            .iter()
            .all(|k| !k.ends_with(".manifest.json")),
        "a manifest claims a memory image"
    );
    ensure!(
        server.open_uploads()?.is_empty(),
        "multipart uploads left open"
    );

    // LiME is optional, but its two parameters go together.
    let mut half = values.clone();
    half.insert("LimeSha256", "ab".repeat(32));
    let run = run_document("sh", &server, &doc, &half, None)?;
    ensure!(run.code == 2 && run.json["status"] == "failed", "{run:?}");
    Ok(())
}

/// Checks one triage result: complete, its manifest under the prefix and case, intact.
#[expect(
    clippy::indexing_slicing,
    reason = "serde_json::Value indexing yields Null, it never panics"
)]
fn check_triage_result(server: &S3Server, result: &Value) -> Result<()> {
    ensure!(result["status"] == "complete", "{result}");
    let src = &result["sources"][0];
    let manifest_key = src["manifest"]["key"].as_str().context("manifest key")?;
    ensure!(
        manifest_key.starts_with("ssm/e2e/IR-2026-0042/")
            && manifest_key.ends_with("/triage.manifest.json"),
        "{manifest_key}"
    );
    ensure!(
        src["triage"]["uid0_accounts"]
            .as_array()
            .is_some_and(|a| a.iter().any(|n| n == "root")),
        "no headline: {src}"
    );
    verify_intact(server, manifest_key)
}

#[test]
fn triage_document_collects_into_s3() -> Result<()> {
    let _turn = take_turn();
    let server = S3Server::start(ServerKind::Garage)?;
    let dev = disk()?;
    let doc = load("airf-acquire-triage.json")?;
    let values = for_doc(&doc, &base_values(&server, &dev.device)?)?;
    let run = run_document("sh", &server, &doc, &values, None)?;
    ensure!(run.code == 0, "{run:?}");
    ensure!(
        run.stdout.lines().count() == 1 && run.stdout.len() < STDOUT_LIMIT,
        "stdout must be the one JSON line: {run:?}"
    );
    ensure!(run.json["command"] == "triage", "{run:?}");
    check_triage_result(&server, &run.json)?;
    ensure_clean(&server)
}

#[test]
fn all_document_takes_memory_then_every_disk() -> Result<()> {
    let _turn = take_turn();
    let server = S3Server::start(ServerKind::Garage)?;
    let dev = disk()?;
    let doc = load("airf-acquire-all.json")?;
    let values = for_doc(&doc, &base_values(&server, &dev.device)?)?;
    let run = run_document("sh", &server, &doc, &values, None)?;
    ensure!(run.stdout.lines().count() == 1, "{run:?}");
    ensure!(run.json["command"] == "all", "{run:?}");
    let runs = run.json["runs"].as_array().context("runs")?;
    ensure!(runs.len() == 3, "{run:?}");
    ensure!(run.json["runs"][0]["command"] == "triage", "{run:?}");
    ensure!(run.json["runs"][1]["command"] == "memory", "{run:?}");
    ensure!(run.json["runs"][2]["command"] == "disk", "{run:?}");
    check_triage_result(&server, &run.json["runs"][0])?;
    // The disks are taken even when memory cannot be.
    check_disk_result(&server, &run.json["runs"][2], &dev.device)?;
    if Path::new("/proc/kcore").exists() {
        ensure!(run.json["runs"][1]["status"] != Value::Null, "{run:?}");
    } else {
        ensure!(
            run.code == 1 && run.json["status"] == "failed" && run.json["exit_code"] == 1,
            "memory failed, so the whole collection is failed: {run:?}"
        );
        ensure!(run.json["runs"][1]["status"] == "failed", "{run:?}");
    }
    ensure_clean(&server)?;
    Ok(())
}

#[test]
fn sigterm_reaches_the_agent_which_aborts_its_upload() -> Result<()> {
    let _turn = take_turn();
    let server = S3Server::start(ServerKind::Garage)?;
    // Incompressible data, so the upload lasts long enough to be interrupted.
    let mut noise = vec![0u8; 384 << 20];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut noise)?;
    let dev = LoopDevice::ext4(512, &[("noise.bin", noise.as_slice())])?;
    drop(noise);
    let doc = load("airf-acquire-disk.json")?;
    let values = for_doc(&doc, &base_values(&server, &dev.device)?)?;
    for shell in ["sh", "bash"] {
        let run = run_document(
            shell,
            &server,
            &doc,
            &values,
            Some(Duration::from_millis(300)),
        )?;
        ensure!(
            run.code == 143,
            "{shell}: expected the agent's SIGTERM exit: {run:?}"
        );
        ensure!(
            run.json["command"] == "disk" && run.json["status"] != "complete",
            "{shell}: {run:?}"
        );
        ensure!(
            server
                .keys("")?
                .iter()
                .all(|k| !k.ends_with(".manifest.json")),
            "{shell}: an interrupted run stored a manifest"
        );
        ensure_clean(&server)
            .with_context(|| format!("under {shell}: the upload must be aborted"))?;
    }
    Ok(())
}
