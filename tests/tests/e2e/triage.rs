//! `airf-agent triage` on this machine: inside a container's pid namespace it says so and lists
//! only that namespace's processes; it refuses stdout; its stored set verifies, and a changed
//! object is named. The planted indicators are in `triage_vm` (a real guest).

use std::process::Command;

use airf_e2e::agent_bin;
use anyhow::{Context, Result, ensure};
use serde_json::Value;

fn manifest_of(result: &Value) -> Result<std::path::PathBuf> {
    result
        .pointer("/sources/0/manifest/location")
        .and_then(Value::as_str)
        .map(std::path::PathBuf::from)
        .with_context(|| format!("no manifest: {result}"))
}

#[test]
fn in_a_nested_pid_namespace_it_says_so_and_sees_only_that_namespace() -> Result<()> {
    let out_dir = tempfile::tempdir()?;
    // `unshare --pid --fork --mount-proc`: what a container runtime gives its first process.
    let out = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc"])
        .arg(agent_bin()?)
        .args([
            "triage",
            "--case",
            "IR-NS",
            "--no-progress",
            "--json",
            "--to",
        ])
        .arg(out_dir.path())
        .output()
        .context("unshare (util-linux)")?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_slice(&out.stdout)?;
    let warnings = result
        .pointer("/sources/0/warnings")
        .cloned()
        .unwrap_or_default();
    ensure!(
        warnings.to_string().contains("nested pid namespace"),
        "no warning: {result}"
    );
    let m: Value = serde_json::from_slice(&std::fs::read(manifest_of(&result)?)?)?;
    ensure!(
        m.pointer("/pid_namespace/nested") == Some(&Value::Bool(true)),
        "{m}"
    );
    // Its own namespace: the agent is pid 1 there, and nothing of the host is listed.
    let processes =
        std::fs::read_to_string(manifest_of(&result)?.with_file_name("triage.processes.jsonl"))?;
    let pids: Vec<u64> = processes
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok()?.get("pid")?.as_u64())
        .collect();
    ensure!(pids == [1], "pids seen in the namespace: {pids:?}");
    Ok(())
}

#[test]
fn stdout_is_refused_and_a_changed_object_fails_verify_by_name() -> Result<()> {
    let out = Command::new(agent_bin()?)
        .args(["triage", "--to", "-", "--no-progress"])
        .output()?;
    ensure!(
        out.status.code() == Some(2)
            && String::from_utf8_lossy(&out.stderr).contains("give --to s3://"),
        "{out:?}"
    );
    let dir = tempfile::tempdir()?;
    let out = Command::new(agent_bin()?)
        .args([
            "triage",
            "--case",
            "IR-V",
            "--no-progress",
            "--json",
            "--to",
        ])
        .arg(dir.path())
        .output()?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest = manifest_of(&serde_json::from_slice(&out.stdout)?)?;
    let verify = |m: &std::path::Path| -> Result<Value> {
        let out = Command::new(agent_bin()?)
            .args(["verify", "--json", "--no-progress"])
            .arg(m)
            .output()?;
        Ok(serde_json::from_slice(&out.stdout)?)
    };
    let v = verify(&manifest)?;
    ensure!(v["status"] == "intact", "{v}");
    std::fs::write(manifest.with_file_name("triage.accounts.jsonl"), b"{}\n")?;
    let v = verify(&manifest)?;
    ensure!(
        v["status"] == "not_intact"
            && v["message"]
                .as_str()
                .is_some_and(|m| m.contains("triage.accounts.jsonl sha256")),
        "{v}"
    );
    Ok(())
}
