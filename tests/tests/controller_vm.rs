//! The whole investigation with real evidence: the controller's steps against the AWS API
//! emulator (moto), and the instance's side of Run Command played by a real Linux kernel in a VM
//! running the release agent: memory from /proc/kcore and its virtio disk, uploaded into the
//! emulator's evidence bucket. verify then reads those manifests back; contain isolates.
//!
//! Boots a VM, so `#[ignore]`d in a plain `cargo test`; tests/vm/run-tests.sh runs it.

#![expect(
    clippy::indexing_slicing,
    reason = "serde_json::Value indexing yields Null, it never panics"
)]

use airf_e2e::emulator::{Emulator, step};
use airf_e2e::vm::guest;
use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

/// Sends `kind`'s document, answers it with the agent's result, and reads the status back.
fn acquire(
    emu: &Emulator,
    case: &str,
    subject: &Value,
    kind: &str,
    agent_json: &str,
) -> Result<Value> {
    let sent = emu.ok(step("acquire", case, subject, json!({"kind": kind})))?;
    let command_id = sent["command_id"].as_str().context("command id")?;
    // The document prints the agent's result compacted onto one line.
    let result: Value = serde_json::from_str(agent_json)
        .with_context(|| format!("{kind} agent output: {agent_json}"))?;
    emu.answer_command(command_id, "Success", &result.to_string(), "")?;
    emu.ok(step(
        "acquire_status",
        case,
        subject,
        json!({"command": sent}),
    ))
}

#[test]
#[ignore = "boots a VM; run by tests/vm/run-tests.sh"]
fn analyze_tag_acquires_memory_and_disk_verifies_and_contains() -> Result<()> {
    let emu = Emulator::start("")?;
    let id = emu.instance(&[("Name", "web-1"), ("SecurityIncidentStatus", "Analyze")])?;
    let started = emu.ok(emu.tag_event(&id, "Analyze"))?;
    ensure!(started["execution_arn"].is_string(), "{started}");
    let input: Value = serde_json::from_str(&emu.executions()?.first().context("no execution")?.1)?;
    let case = input["case_id"].as_str().context("case")?.to_owned();
    let subject = input["instances"][0].clone();
    ensure!(
        emu.ok(step(
            "claim",
            &case,
            &subject,
            json!({"intent": "investigate"})
        ))?["claimed"]
            == json!(true)
    );
    emu.ok(step("prepare", &case, &subject, json!({})))?;
    emu.ok(step("managed", &case, &subject, json!({})))?;

    // The instance: a real kernel with a 16 MiB disk, named like the EC2 instance (the agent
    // files evidence under the instance id, from IMDS on EC2, else the hostname).
    let work = tempfile::tempdir()?;
    let img = work.path().join("disk.img");
    let data: Vec<u8> = (0..16u32 << 20).map(|i| (i / 512 % 251) as u8).collect();
    std::fs::write(&img, &data)?;
    let to = r#"--to "s3://$AIRF_TEST_BUCKET/evidence" --no-progress --json"#;
    let script = format!(
        "hostname {id}; airf-agent memory --source kcore --case {case} {to} >/tmp/m.json; echo MEMRC=$? >&2; \
         airf-agent disk /dev/vda --case {case} {to} >/tmp/d.json; echo DISKRC=$? >&2; \
         echo ==MEMORY==; cat /tmp/m.json; echo ==DISK==; cat /tmp/d.json"
    );
    let run = guest(
        Some(&emu.server),
        &["--disk", &format!("{},ro", img.display())],
        &script,
    )?;
    ensure!(
        run.stderr.contains("MEMRC=0") && run.stderr.contains("DISKRC=0"),
        "guest agent failed:\n{}\n{}",
        run.stdout,
        run.stderr
    );
    let (memory_json, disk_json) = run
        .stdout
        .split_once("==MEMORY==")
        .and_then(|(_, rest)| rest.split_once("==DISK=="))
        .context("guest output without markers")?;

    let memory = acquire(&emu, &case, &subject, "memory", memory_json)?;
    let disk = acquire(&emu, &case, &subject, "disk", disk_json)?;
    ensure!(
        memory["report"]["status"] == json!("complete")
            && disk["report"]["status"] == json!("complete"),
        "{memory} {disk}"
    );

    let verified = emu.ok(step(
        "verify",
        &case,
        &subject,
        json!({"results": [memory, disk]}),
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
        disk_artifact["raw_size"] == json!(data.len()),
        "{disk_artifact}"
    );
    ensure!(
        disk_artifact["raw_sha256"] == json!(airf_e2e::sha256(&data)),
        "the disk's hash is not the image file's"
    );

    // A missing image is caught before containment.
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
        json!({"results": [memory, disk]}),
    )) {
        Err(e)
            if e.kind().error_type() == "Airf.Failed" && e.to_string().contains("is missing") => {}
        other => bail!("a deleted image must fail verify, got {other:?}"),
    }

    let contained = emu.ok(step("contain", &case, &subject, json!({})))?;
    ensure!(
        contained["snapshots"]
            .as_array()
            .is_some_and(|s| s.len() == 2),
        "{contained}"
    );
    let tags = emu.tags(&id)?;
    ensure!(
        tags.get("SecurityIncidentStatus").map(String::as_str) == Some("Contain"),
        "{tags:?}"
    );
    Ok(())
}
