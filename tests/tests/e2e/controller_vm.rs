//! The whole investigation with real evidence: the repository's workflow definition run by an
//! ASL interpreter (aws-local-stepfunctions), its Task states handled by the controller against
//! the AWS API emulator (moto), and the instance's side of Run Command played by a real Linux
//! kernel in a VM running the release agent: memory from /proc/kcore and its virtio disk,
//! uploaded into the emulator's evidence bucket. verify reads those manifests back; contain
//! isolates.
//!
//! Boots a VM, so `#[ignore]`d in a plain `cargo test`; tests/vm/run-tests.sh runs it.

use airf_e2e::emulator::{Emulator, step};
use airf_e2e::guest_evidence::GuestEvidence;
use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

#[test]
#[ignore = "boots a VM; run by tests/vm/run-tests.sh"]
fn analyze_tag_runs_the_workflow_to_containment_with_verified_evidence() -> Result<()> {
    let emu = Emulator::start("")?;
    let id = emu.instance(&[("Name", "web-1"), ("SecurityIncidentStatus", "Analyze")])?;
    let started = emu.ok(emu.tag_event(&id, "Analyze"))?;
    let execution_arn = started["execution_arn"]
        .as_str()
        .context("no execution ARN")?
        .to_owned();
    let input = emu.only_execution_input()?;
    let case = input["case_id"].as_str().context("case")?.to_owned();

    // The instance: a real kernel with a 16 MiB disk, named like the EC2 instance. It runs what
    // the two documents run; its results answer the commands when the workflow sends them.
    let evidence = GuestEvidence::acquire(&emu, &id, &case)?;

    let commands = std::sync::Mutex::new(Vec::new());
    let workflow = emu.run_workflow(&input, |kind, command_id| {
        commands
            .lock()
            .unwrap()
            .push((kind.to_owned(), command_id.to_owned()));
        evidence.answer(&emu, kind, command_id)
    })?;
    workflow.ensure_succeeded()?;
    workflow.ensure_actions(&[
        "normalize",
        "claim",
        "control_plane",
        "isolation_plan",
        "prepare",
        "managed",
        "acquire",
        "acquire_status",
        "acquire",
        "acquire_status",
        "acquire",
        "acquire_status",
        "verify",
        "contain",
        "symbols",
    ])?;
    let result = &workflow.outcome["output"]["instances"][0];
    ensure!(result["status"] == json!("contained"), "{result}");
    ensure!(
        result["containment"]["snapshots"]
            .as_array()
            .is_some_and(|s| s.len() == 2),
        "{result}"
    );
    emu.ensure_status(&id, "Contain")?;
    // After containment, the guest kernel's Volatility symbol table beside its memory image,
    // built by the controller from the BTF, kallsyms, VMCOREINFO and banner the agent stored.
    let table = &result["symbols"]["images"][0];
    let key = table["table"]
        .as_str()
        .and_then(|t| t.strip_prefix(&format!("s3://{}/", emu.config.evidence_bucket)))
        .filter(|k| k.ends_with("/memory.isf.json.xz"))
        .with_context(|| format!("no symbol table: {result}"))?;
    let isf = airf_isf::decompress(&emu.server.get(key)?)?;
    ensure!(
        isf.symbols.contains_key("init_task") && isf.user_types.contains_key("task_struct"),
        "{key} is no table of the guest's kernel"
    );

    // What verify checked, asked again: both artifacts, the disk's hash that of the image file.
    let subject = input["instances"][0].clone();
    let results: Vec<Value> = commands
        .into_inner()
        .unwrap()
        .into_iter()
        .map(|(kind, command_id)| {
            let report = if kind == "memory" {
                evidence.memory.clone()
            } else {
                evidence.disk.clone()
            };
            json!({
                "kind": kind,
                "command_id": command_id,
                "ssm_status": "Success",
                "report": report
            })
        })
        .collect();
    let verified = emu.ok(step(
        "verify",
        &case,
        &subject,
        json!({ "results": results, "execution_arn": execution_arn }),
    ))?;
    let artifacts = verified["artifacts"].as_array().context("no artifacts")?;
    ensure!(artifacts.len() == 2, "{verified:#}");
    for a in artifacts {
        ensure!(
            a["raw_sha256"].as_str().is_some_and(|h| h.len() == 64),
            "{a}"
        );
        ensure!(
            a["image"]
                .as_str()
                .is_some_and(|i| i.contains(&format!("/evidence/{case}/{id}/"))),
            "{a}"
        );
    }
    let disk_artifact = artifacts
        .iter()
        .find(|a| a["kind"] == json!("disk"))
        .context("no disk artifact")?;
    ensure!(
        disk_artifact["raw_size"] == json!(evidence.disk_bytes.len()),
        "{disk_artifact}"
    );
    ensure!(
        disk_artifact["raw_sha256"] == json!(airf_e2e::sha256(&evidence.disk_bytes)),
        "the disk's hash is not the image file's"
    );

    // Evidence of the wrong kind is caught: the disk's result handed in as the memory result.
    let swapped: Vec<Value> = results
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r["report"] = evidence.disk.clone();
            r
        })
        .collect();
    match emu.invoke(step(
        "verify",
        &case,
        &subject,
        json!({ "results": swapped, "execution_arn": execution_arn }),
    )) {
        Err(e)
            if e.to_string()
                .contains("a disk manifest where memory evidence was expected") => {}
        other => bail!("a disk manifest as memory evidence must fail verify, got {other:?}"),
    }

    // A missing image is caught.
    let image = disk_artifact["image"].as_str().context("image")?.to_owned();
    let rm = emu
        .server
        .command("aws")
        .args(["s3", "rm", &image])
        .output()?;
    ensure!(
        rm.status.success(),
        "aws s3 rm: {}",
        String::from_utf8_lossy(&rm.stderr)
    );
    match emu.invoke(step(
        "verify",
        &case,
        &subject,
        json!({ "results": results, "execution_arn": execution_arn }),
    )) {
        Err(e)
            if e.kind().error_type() == "Airf.Failed" && e.to_string().contains("is missing") => {}
        other => bail!("a deleted image must fail verify, got {other:?}"),
    }
    Ok(())
}
