//! The controller against AWS's own refusals and limits, which moto does not make by itself and
//! tests/scripts/moto_faults.py adds in their real shapes: EC2 refusing protection on a Spot
//! instance, throttling (EC2 `RequestLimitExceeded`, SSM `ThrottlingException`), the SSM Agent's
//! failed download of the agent, GetCommandInvocation's 24,000-character stdout, and Step
//! Functions refusing the name of an execution that has ended. Each is driven through the
//! handler, and through the workflow interpreter to the end the workflow means for it.

use airf_e2e::emulator::{ACCOUNT, Emulator, REGION, sdk, step};
use anyhow::{Context, Result, bail, ensure};
use aws_sdk_ec2::types as ec2t;
use serde_json::{Value, json};

/// The instance's security groups, interface by interface.
fn interface_groups(emu: &Emulator, id: &str) -> Result<Vec<Vec<String>>> {
    Ok(emu
        .describe(id)?
        .network_interfaces()
        .iter()
        .map(|eni| {
            eni.groups()
                .iter()
                .filter_map(|g| g.group_id().map(str::to_owned))
                .collect()
        })
        .collect())
}

/// The instance is isolated, tagged Contain for the case, and both protections are reported
/// refused with EC2's own words.
fn ensure_contained_with_protection_refused(
    emu: &Emulator,
    id: &str,
    case: &str,
    containment: &Value,
) -> Result<()> {
    let isolation = containment["isolation_group"]
        .as_str()
        .context("no isolation group")?;
    let groups = interface_groups(emu, id)?;
    ensure!(
        !groups.is_empty() && groups.iter().all(|g| g == &[isolation.to_owned()]),
        "not isolated: {groups:?}"
    );
    let tags = emu.tags(id)?;
    ensure!(
        tags.get("SecurityIncidentStatus").map(String::as_str) == Some("Contain")
            && tags.get("airf:contained").map(String::as_str) == Some(case),
        "{tags:?}"
    );
    ensure!(
        containment["protections_applied"] == json!([]),
        "{containment}"
    );
    let refused = containment["protections_refused"]
        .as_object()
        .context("no protections_refused")?;
    ensure!(
        refused.len() == 2
            && refused.values().all(|why| why
                .as_str()
                .is_some_and(|w| w.contains("UnsupportedOperation")
                    && w.contains("not supported for spot instances"))),
        "{containment}"
    );
    ensure!(
        emu.case_snapshots(case)?.len() == 2,
        "both volumes snapshotted"
    );
    Ok(())
}

#[test]
fn a_spot_instance_is_isolated_and_contained_though_ec2_refuses_its_protection() -> Result<()> {
    let emu = Emulator::start("")?;
    let id = emu.spot_instance(&[("Name", "batch-1"), ("SecurityIncidentStatus", "Contain")])?;
    // The emulator refuses as EC2 does.
    let refused = emu.rt.block_on(
        emu.ec2
            .modify_instance_attribute()
            .instance_id(&id)
            .disable_api_termination(ec2t::AttributeBooleanValue::builder().value(true).build())
            .send(),
    );
    ensure!(
        sdk(refused)
            .err()
            .is_some_and(|e| e.to_string().contains("UnsupportedOperation")),
        "moto_faults.py let protection through on a Spot instance"
    );

    let started = emu.ok(emu.tag_event(&id, "Contain"))?;
    ensure!(started["execution_arn"].is_string(), "{started}");
    let input = emu.only_execution_input()?;
    let case = input["case_id"].as_str().context("case")?.to_owned();
    let subject = input["instances"][0].clone();
    let claim = emu.ok(step("claim", &case, &subject, json!({"intent": "contain"})))?;
    ensure!(claim["claimed"] == json!(true), "{claim}");
    let done = emu.ok(step("contain", &case, &subject, json!({})))?;
    ensure_contained_with_protection_refused(&emu, &id, &case, &done)?;
    let messages = emu.messages()?;
    ensure!(
        messages
            .iter()
            .filter(|m| m.1.contains("instance contained")
                && m.2
                    .contains("Protection REFUSED by EC2: termination and stop"))
            .count()
            == 2,
        "{messages:?}"
    );
    Ok(())
}

#[test]
fn workflow_contains_a_spot_instance_to_the_end() -> Result<()> {
    let emu = Emulator::start("")?;
    let id = emu.spot_instance(&[("Name", "batch-1")])?;
    let run = emu.run_containment("IR-SPOT", &[&id])?;
    run.ensure_succeeded()?;
    let result = &run.outcome["output"]["instances"][0];
    ensure!(result["status"] == json!("contained"), "{}", run.outcome);
    run.ensure_actions(&["normalize", "claim", "control_plane", "contain"])?;
    ensure_contained_with_protection_refused(&emu, &id, "IR-SPOT", &result["containment"])
}

/// IAM refuses the revocation policy's new version (`LimitExceeded`, the quota of a managed
/// policy document): the workflow still ends with the instance contained, snapshots taken and
/// tagged, and its summary names the roles whose sessions the responder must revoke by hand.
#[test]
fn workflow_contains_when_iam_refuses_the_revocation_as_over_quota() -> Result<()> {
    let emu = Emulator::start("")?;
    let id = emu.instance(&[("Name", "web-1")])?;
    emu.inject_fault("iam:CreatePolicyVersion", "LimitExceeded", 50)?;
    let run = emu.run_containment("IR-FULL", &[&id])?;
    run.ensure_succeeded()?;
    run.ensure_actions(&["normalize", "claim", "control_plane", "contain"])?;
    let result = &run.outcome["output"]["instances"][0];
    ensure!(result["status"] == json!("contained"), "{}", run.outcome);
    let not_revoked = result["containment"]["not_revoked"]
        .as_array()
        .context("no not_revoked in the summary")?;
    ensure!(
        !not_revoked.is_empty()
            && not_revoked.iter().all(|gap| gap
                .as_str()
                .is_some_and(|g| g.contains("PolicySize") && g.contains("Revoke active sessions"))),
        "{}",
        run.outcome
    );
    emu.ensure_status(&id, "Contain")?;
    ensure!(
        emu.case_snapshots("IR-FULL")?.len() == 2,
        "both volumes snapshotted"
    );
    let isolation = result["containment"]["isolation_group"]
        .as_str()
        .context("group")?;
    ensure!(
        interface_groups(&emu, &id)?
            .iter()
            .all(|g| g == &[isolation.to_owned()]),
        "not isolated"
    );
    Ok(())
}

#[test]
fn a_new_trigger_after_a_run_that_ended_before_claim_starts_a_new_execution() -> Result<()> {
    let emu = Emulator::start("")?;
    let id = emu.instance(&[("Name", "web-1"), ("SecurityIncidentStatus", "Analyze")])?;
    let first = emu.tag_event(&id, "Analyze");
    let started = emu.ok(first.clone())?;
    let arn = started["execution_arn"]
        .as_str()
        .context("no execution")?
        .to_owned();
    // The run ends before claim (here: stopped by hand), so airf:investigations stays 0.
    sdk(emu
        .rt
        .block_on(emu.sfn.stop_execution().execution_arn(&arn).send()))?;
    ensure!(!emu.tags(&id)?.contains_key("airf:investigations"));

    // The same event again (EventBridge delivers at least once): Step Functions refuses the
    // ended execution's name, and nothing new starts.
    let redelivered = emu.ok(first)?;
    ensure!(
        redelivered["execution_arn"].is_null()
            && redelivered["skipped"][0]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("handled before")),
        "{redelivered}"
    );
    ensure!(emu.executions()?.len() == 1, "a redelivery started a run");

    // The responder tags the instance again: a new event, a new execution.
    let mut again = emu.tag_event(&id, "Analyze");
    again["id"] = json!("a-new-event-id");
    again["time"] = json!("2026-11-29T18:20:00Z");
    let second = emu.ok(again)?;
    ensure!(
        second["execution_arn"].is_string() && second["execution_arn"] != json!(arn),
        "the next trigger started nothing: {second}"
    );
    let names: Vec<String> = emu.executions()?.into_iter().map(|e| e.0).collect();
    ensure!(
        names.len() == 2
            && names
                .iter()
                .all(|n| n.starts_with(&format!("airf-{id}-1-")) && n.len() <= 80),
        "{names:?}"
    );
    Ok(())
}

/// A disk run over this many sources prints a result longer than the 24,000 characters of
/// stdout SSM keeps.
const MANY_DISKS: usize = 48;

#[test]
fn a_result_longer_than_ssm_keeps_is_read_whole_from_the_agents_copy() -> Result<()> {
    let emu = Emulator::start("")?;
    let id = emu.instance(&[("Name", "web-1")])?;
    let case = "IR-LONG";
    let subject = json!({"instance_id": id, "account": ACCOUNT, "region": REGION, "claim": 1});
    // As the workflow does: claim first (Run Command reaches only instances tagged for an
    // incident).
    emu.ok(step(
        "claim",
        case,
        &subject,
        json!({"intent": "investigate"}),
    ))?;
    let sent = emu.ok(step("acquire", case, &subject, json!({"kind": "disk"})))?;
    let command_id = sent["command_id"].as_str().context("command id")?;

    // The instance's side: the real agent over many small "disks", into moto's S3.
    let dir = tempfile::tempdir()?;
    let mut disks = Vec::new();
    for i in 0..MANY_DISKS {
        let path = dir
            .path()
            .join(format!("volume-with-a-long-device-name-{i:03}.img"));
        std::fs::write(&path, vec![u8::try_from(i % 251)?; 8192])?;
        disks.push(path);
    }
    let out = emu
        .server
        .command(airf_e2e::agent_bin()?)
        .arg("disk")
        .args(&disks)
        .args(["--to", &format!("s3://{}/evidence", emu.server.bucket)])
        .args(["--case", case, "--json", "--no-progress"])
        .args([
            "--endpoint-url",
            &emu.server.endpoint()?,
            "--region",
            REGION,
        ])
        .output()?;
    ensure!(
        out.status.success(),
        "the agent failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout)?;
    let line = printed.to_string();
    ensure!(line.len() > 24_000, "only {} characters", line.len());
    let folder = printed["evidence_folder"].as_str().context("no folder")?;
    let stored: Value = serde_json::from_slice(&emu.server.get(&format!("{folder}/result.json"))?)?;
    ensure!(stored == printed, "the stored result differs from stdout");
    emu.answer_command(
        command_id,
        "Success",
        &format!("{line}\n"),
        &String::from_utf8_lossy(&out.stderr),
    )?;

    let done = emu.ok(step(
        "acquire_status",
        case,
        &subject,
        json!({"command": sent}),
    ))?;
    ensure!(
        done["report"] == printed,
        "the result the workflow carries is not the agent's whole result"
    );
    ensure!(
        done["report"]["sources"]
            .as_array()
            .is_some_and(|s| s.len() == MANY_DISKS),
        "{:.300}",
        done["report"]
    );
    Ok(())
}

/// What airf-run.sh prints when the SSM Agent's aws:downloadContent left no agent.
const NOT_DOWNLOADED: &str = "agent not downloaded to /dev/shm/airf-dl/airf-agent: check ArtifactBucket, Region, AgentVersion and the instance role";

#[test]
fn workflow_records_a_refused_agent_download_with_what_to_fix_and_retries_throttled_ssm()
-> Result<()> {
    let emu = Emulator::start("")?;
    let id = emu.instance(&[("Name", "web-1")])?;
    // SSM throttles the first acquisition (triage) more often than the SDK retries by itself:
    // the workflow's own Retry sends it again.
    emu.inject_fault("ssm:SendCommand", "ThrottlingException", 4)?;
    let input = json!({
        "case_id": "IR-DENIED",
        "intent": "investigate",
        "trigger": "console",
        "retain_artefacts": true,
        "instances": [{"instance_id": id, "account": ACCOUNT, "region": REGION, "claim": 1}]
    });
    let run = emu.run_workflow(&input, |kind, command_id| {
        ensure!(kind == "memory", "{kind} acquired after memory failed");
        // The SSM Agent's signed GetObject is denied, its unsigned retry too: the step's error
        // is the HTTP fallback's (amazon-ssm-agent fileutil/artifact: httpDownload).
        emu.answer_step(
            command_id,
            "DownloadAgent",
            "Failed",
            "",
            "http request failed. status:403 Forbidden statuscode:403",
        )?;
        emu.answer_command(
            command_id,
            "Failed",
            &format!(
                "{}\n",
                json!({"command": "memory", "status": "failed", "exit_code": 1, "error": NOT_DOWNLOADED})
            ),
            &format!("airf: {NOT_DOWNLOADED}\n"),
        )
    })?;
    run.ensure_failed("Airf.Failed")?;
    run.ensure_actions(&[
        "normalize",
        "claim",
        "control_plane",
        "isolation_plan",
        "prepare",
        "managed",
        "acquire",
        "acquire",
        "acquire_status",
        "acquire",
        "acquire_status",
        "fail",
    ])?;
    ensure!(emu.faults_left()?.is_empty(), "{:?}", emu.faults_left()?);
    emu.ensure_status(&id, "Error")?;
    let failed: Vec<String> = emu
        .messages()?
        .into_iter()
        .filter(|m| m.1.contains("FAILED"))
        .map(|m| m.2)
        .collect();
    // The bucket is the one the templates deploy (the emulator's configuration).
    let object = format!(
        "s3:GetObject on s3://{}/agent/0.1.0/airf-agent",
        emu.config.artifact_bucket
    );
    ensure!(
        failed.len() == 2
            && failed
                .iter()
                .all(|m| m.contains("403 AccessDenied") && m.contains(&object)),
        "the responder is not told what to fix: {failed:?}"
    );
    Ok(())
}

#[test]
fn workflow_contains_through_ec2_throttling() -> Result<()> {
    let emu = Emulator::start("")?;
    let id = emu.instance(&[("Name", "web-1")])?;
    // More RequestLimitExceeded than the SDK's own three attempts absorb, on the isolation.
    emu.inject_fault(
        "ec2:ModifyNetworkInterfaceAttribute",
        "RequestLimitExceeded",
        4,
    )?;
    let run = emu.run_containment("IR-THROTTLED", &[&id])?;
    ensure!(
        run.outcome["status"] == json!("SUCCEEDED")
            && run.outcome["output"]["instances"][0]["status"] == json!("contained"),
        "{}",
        run.outcome
    );
    run.ensure_actions(&["normalize", "claim", "control_plane", "contain", "contain"])?;
    ensure!(emu.faults_left()?.is_empty(), "{:?}", emu.faults_left()?);
    let containment = &run.outcome["output"]["instances"][0]["containment"];
    let isolation = containment["isolation_group"].as_str().context("group")?;
    ensure!(
        interface_groups(&emu, &id)?
            .iter()
            .all(|g| g == &[isolation.to_owned()]),
        "not isolated"
    );
    ensure!(
        containment["protections_applied"] == json!(["termination", "stop"]),
        "{containment}"
    );
    ensure!(
        emu.tags(&id)?
            .get("SecurityIncidentStatus")
            .map(String::as_str)
            == Some("Contain")
    );
    Ok(())
}

#[test]
fn prepare_refuses_an_instance_in_another_region_with_no_way_to_the_evidence_bucket() -> Result<()>
{
    let emu = Emulator::start("")?;
    let region = "eu-west-1";
    let far = emu.instance_without_egress(region)?;
    let subject = json!({"instance_id": far.id, "account": ACCOUNT, "region": region, "claim": 1});
    let profile = |emu: &Emulator| -> Result<Option<String>> {
        let out = sdk(emu.rt.block_on(
            far.ec2
                .describe_iam_instance_profile_associations()
                .filters(
                    ec2t::Filter::builder()
                        .name("instance-id")
                        .values(&far.id)
                        .build(),
                )
                .send(),
        ))?;
        Ok(out
            .iam_instance_profile_associations()
            .first()
            .and_then(|a| a.iam_instance_profile()?.arn())
            .map(|arn| arn.rsplit('/').next().unwrap_or(arn).to_owned()))
    };
    ensure!(profile(&emu)?.as_deref() == Some("WebServer"));
    // As the workflow does: claim tags the instance first; the member role changes only
    // instances that carry SecurityIncidentStatus.
    emu.ok(step(
        "claim",
        "IR-FAR",
        &subject,
        json!({"intent": "investigate"}),
    ))?;
    match emu.invoke(step("prepare", "IR-FAR", &subject, json!({}))) {
        Err(e)
            if e.kind().error_type() == "Airf.Failed"
                && e.to_string().contains("no route out of its VPC")
                && e.to_string().contains("NAT gateway")
                && e.to_string().contains(&far.main_route_table) => {}
        other => bail!("prepare must fail early, naming the route table and the fix: {other:?}"),
    }
    ensure!(
        profile(&emu)?.as_deref() == Some("WebServer"),
        "prepare changed the profile before failing"
    );
    ensure!(
        emu.messages()?.is_empty(),
        "prepare notified before failing"
    );

    // With an internet gateway route, the same instance is prepared.
    emu.rt.block_on(async {
        let igw = far.ec2.create_internet_gateway().send().await?;
        let igw = igw
            .internet_gateway()
            .and_then(|g| g.internet_gateway_id())
            .context("igw")?
            .to_owned();
        far.ec2
            .attach_internet_gateway()
            .internet_gateway_id(&igw)
            .vpc_id(&far.vpc)
            .send()
            .await?;
        far.ec2
            .create_route()
            .route_table_id(&far.main_route_table)
            .destination_cidr_block("0.0.0.0/0")
            .gateway_id(&igw)
            .send()
            .await?;
        anyhow::Ok(())
    })?;
    let prepared = emu.ok(step("prepare", "IR-FAR", &subject, json!({})))?;
    ensure!(prepared["profile"] == json!("replaced"), "{prepared}");
    ensure!(profile(&emu)?.as_deref() == Some("AirfAcquisitionInstanceProfile"));
    Ok(())
}
