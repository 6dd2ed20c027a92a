//! The controller against an AWS API emulator (moto, with the SSM calls it lacks added by
//! tests/scripts/moto_aws.py): real EC2 instances, volumes, security groups, instance profiles,
//! Auto Scaling groups, target groups, SNS topics (read back through SQS) and a Step Functions
//! state machine made from the repository's workflow definition. Each workflow step is driven
//! through the Lambda handler, as Step Functions would, and the emulator's state is checked.
//! The instance's side of Run Command is played by the test: it runs the real agent and hands
//! its JSON result to the emulated GetCommandInvocation.

use airf_e2e::agent_bin;
use airf_e2e::emulator::{ACCOUNT, Emulator, NOW, REGION, sdk, step, urlencoding_decode};
use airf_e2e::workflow_runner::legacy_input;
use anyhow::{Context, Result, bail, ensure};
use aws_sdk_ec2::types as ec2t;
use serde_json::{Value, json};

#[test]
fn analyze_tag_is_claimed_prepared_and_a_failed_memory_acquisition_ends_in_error() -> Result<()> {
    let emu = Emulator::start("")?;
    let id = emu.instance(&[("Name", "web-1"), ("SecurityIncidentStatus", "Analyze")])?;
    let groups_before = emu.describe(&id)?.security_groups().to_vec();

    // start: one execution, whose input is airf's workflow input.
    let started = emu.ok(emu.tag_event(&id, "Analyze"))?;
    let arn = started["execution_arn"]
        .as_str()
        .context("no execution started")?
        .to_owned();
    let execs = emu.executions()?;
    ensure!(
        execs.len() == 1 && execs[0].0.starts_with(&format!("airf-{id}-1-")),
        "executions: {execs:?}"
    );
    // A redelivered event (EventBridge is at-least-once) starts nothing new.
    let again = emu.ok(emu.tag_event(&id, "Analyze"))?;
    ensure!(again["execution_arn"] == json!(arn), "duplicate: {again}");
    ensure!(
        emu.executions()?.len() == 1,
        "a duplicate event started a second execution"
    );

    let input: Value = serde_json::from_str(&execs[0].1)?;
    let normalized = emu.ok(json!({"action": "normalize", "input": input}))?;
    ensure!(
        normalized == input,
        "normalize changed airf's own input: {normalized}"
    );
    let case = input["case_id"].as_str().context("case id")?.to_owned();
    let subject = input["instances"][0].clone();
    ensure!(
        subject["instance_id"] == json!(id) && subject["claim"] == json!(1),
        "{subject}"
    );

    // claim
    let claim = emu.ok(step(
        "claim",
        &case,
        &subject,
        json!({"intent": "investigate"}),
    ))?;
    ensure!(claim["claimed"] == json!(true), "{claim}");
    let tags = emu.tags(&id)?;
    ensure!(
        tags.get("SecurityIncidentStatus").map(String::as_str) == Some("InProgress"),
        "{tags:?}"
    );
    ensure!(
        tags.get("airf:case") == Some(&case)
            && tags.get("airf:investigations").map(String::as_str) == Some("1"),
        "{tags:?}"
    );
    // Now under investigation: a second trigger (Security Hub) is skipped, nothing started.
    let hub = json!({
        "version": "0",
        "id": "hub-1",
        "detail-type": "Security Hub Findings - Custom Action",
        "source": "aws.securityhub",
        "account": ACCOUNT,
        "time": "2026-11-29T18:01:00Z",
        "region": REGION,
        "resources": [],
        "detail": {"findings": [{"AwsAccountId": ACCOUNT, "Resources": [{
            "Type": "AwsEc2Instance",
            "Id": format!("arn:aws:ec2:{REGION}:{ACCOUNT}:instance/{id}")
        }]}]}
    });
    let skipped = emu.ok(hub)?;
    ensure!(
        skipped["execution_arn"].is_null()
            && skipped["skipped"][0]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("already under investigation")),
        "{skipped}"
    );
    ensure!(emu.executions()?.len() == 1);

    // prepare: WebServer replaced by the acquisition profile, recorded; both topics told.
    let prepared = emu.ok(step("prepare", &case, &subject, json!({})))?;
    ensure!(prepared["profile"] == json!("replaced"), "{prepared}");
    ensure!(emu.profile(&id)?.as_deref() == Some("AirfAcquisitionInstanceProfile"));
    ensure!(
        emu.tags(&id)?
            .get("airf:previous-profile")
            .is_some_and(|p| p.ends_with("/WebServer"))
    );
    let messages = emu.messages()?;
    ensure!(
        messages.len() == 2
            && messages
                .iter()
                .all(|m| m.1.contains("investigation started")),
        "{messages:?}"
    );
    let chat: Value = serde_json::from_str(
        &messages
            .iter()
            .find(|m| m.0 == 1)
            .context("no chat message")?
            .2,
    )?;
    ensure!(
        chat["source"] == json!("custom") && chat["version"] == json!("1.0"),
        "chat message is not an AWS Chatbot custom notification: {chat}"
    );

    // managed: the emulated SSM sees the instance once it has an instance profile.
    emu.ok(step("managed", &case, &subject, json!({})))?;

    // acquire memory: the document is sent with the case's parameters.
    let sent = emu.ok(step("acquire", &case, &subject, json!({"kind": "memory"})))?;
    let command_id = sent["command_id"]
        .as_str()
        .context("command id")?
        .to_owned();
    let status = step("acquire_status", &case, &subject, json!({"command": sent}));
    match emu.invoke(status.clone()) {
        Err(e) if e.kind().error_type() == "Airf.Pending" => {}
        other => bail!("a running command must be Airf.Pending, got {other:?}"),
    }
    // The instance's side: the real agent, on this host, whose kernel has no /proc/kcore.
    failing_memory_run(&emu, &case, &command_id)?;
    let failure = match emu.invoke(status) {
        Err(e) if e.kind().error_type() == "Airf.Failed" => e.to_string(),
        other => bail!("a failed agent run must be Airf.Failed, got {other:?}"),
    };
    ensure!(
        failure.contains("memory acquisition") && failure.contains("failed"),
        "{failure}"
    );

    // fail: as the workflow's Catch passes it.
    let cause = json!({"errorType": "Airf.Failed", "errorMessage": failure});
    let caught = json!({"Error": "Airf.Failed", "Cause": cause.to_string()});
    let recorded = emu.ok(step("fail", &case, &subject, json!({"error": caught})))?;
    ensure!(recorded["tagged"] == json!(true), "{recorded}");
    let tags = emu.tags(&id)?;
    ensure!(
        tags.get("SecurityIncidentStatus").map(String::as_str) == Some("Error"),
        "{tags:?}"
    );
    ensure!(
        tags.get("airf:reason")
            .is_some_and(|r| r.starts_with("Airf.Failed: memory acquisition")),
        "{tags:?}"
    );
    let messages = emu.messages()?;
    ensure!(
        messages.len() == 2 && messages.iter().all(|m| m.1.contains("FAILED")),
        "{messages:?}"
    );
    ensure!(
        messages.iter().any(|m| m.2.contains("NOT contained")),
        "{messages:?}"
    );
    // Not contained: groups as before, no snapshots.
    ensure!(
        emu.describe(&id)?.security_groups() == groups_before.as_slice(),
        "a failed investigation changed the groups"
    );
    let snaps = emu.case_snapshots(&case)?;
    ensure!(snaps.is_empty(), "snapshots taken without containment");
    Ok(())
}

#[test]
fn contain_tag_isolates_the_instance_and_its_own_echo_changes_nothing() -> Result<()> {
    let emu = Emulator::start("")?;
    // The suspect is in an Auto Scaling group and behind a load balancer.
    let (id, _) = emu.auto_scaled_web_server()?;
    emu.rt.block_on(emu.attach_data_volume(&id))?;
    emu.tag(&id, "SecurityIncidentStatus", "Contain")?;

    let started = emu.ok(emu.tag_event(&id, "Contain"))?;
    ensure!(started["execution_arn"].is_string(), "{started}");
    let input: Value = serde_json::from_str(&emu.executions()?.first().context("no execution")?.1)?;
    ensure!(input["intent"] == json!("contain"), "{input}");
    let case = input["case_id"].as_str().context("case")?.to_owned();
    let subject = input["instances"][0].clone();
    ensure!(
        emu.ok(step("claim", &case, &subject, json!({"intent": "contain"})))?["claimed"]
            == json!(true)
    );

    let done = emu.ok(step("contain", &case, &subject, json!({})))?;
    ensure!(
        done["auto_scaling_group"] == json!("web-asg")
            && done["target_groups"]
                .as_array()
                .is_some_and(|t| t.len() == 1),
        "{done}"
    );

    let inst = emu.describe(&id)?;
    let isolation = done["isolation_group"]
        .as_str()
        .context("isolation group")?;
    for eni in inst.network_interfaces() {
        let groups: Vec<&str> = eni.groups().iter().filter_map(|g| g.group_id()).collect();
        ensure!(
            groups == [isolation],
            "interface {:?} groups {groups:?}",
            eni.network_interface_id()
        );
    }
    let sgs = sdk(emu.rt.block_on(
        emu.ec2
            .describe_security_groups()
            .group_ids(isolation)
            .send(),
    ))?;
    let sg = sgs
        .security_groups()
        .first()
        .context("isolation group gone")?;
    ensure!(
        sg.group_name() == Some("airf-isolation")
            && sg.ip_permissions().is_empty()
            && sg.ip_permissions_egress().is_empty(),
        "the isolation group has rules: {sg:?}"
    );
    let untrack = emu.groups_named("airf-untrack")?;
    ensure!(
        untrack
            .first()
            .is_some_and(|g| !g.ip_permissions().is_empty()),
        "no allow-all untrack group"
    );

    ensure!(emu.profile(&id)?.as_deref() == Some("AirfIsolatedInstanceProfile"));
    // Earlier sessions revoked through the account's boundary: set on the workload's role (it
    // had none), already on the acquisition role (template 4), and the instance denied in the
    // boundary's default version; the real IAM calls went through moto.
    ensure!(
        done["not_revoked"] == json!([]) && done["revoked_before"] == json!(NOW),
        "{done}"
    );
    let boundary = format!("arn:aws:iam::{ACCOUNT}:policy/AirfRevokedSessions");
    let acquisition = sdk(emu.rt.block_on(
        emu.iam
            .get_instance_profile()
            .instance_profile_name(&emu.config.acquisition_profile_name)
            .send(),
    ))?;
    let acquisition_role = acquisition
        .instance_profile()
        .and_then(|p| p.roles().first())
        .map(|r| r.role_name().to_owned())
        .context("no acquisition role")?;
    for role in ["WebServerRole", acquisition_role.as_str()] {
        let got = sdk(emu.rt.block_on(emu.iam.get_role().role_name(role).send()))?;
        ensure!(
            got.role()
                .and_then(|r| r.permissions_boundary())
                .and_then(|b| b.permissions_boundary_arn())
                == Some(boundary.as_str()),
            "{role}: {got:?}"
        );
    }
    let versions = sdk(emu
        .rt
        .block_on(emu.iam.list_policy_versions().policy_arn(&boundary).send()))?;
    let default = versions
        .versions()
        .iter()
        .find(|v| v.is_default_version())
        .and_then(|v| v.version_id())
        .context("no default version")?
        .to_owned();
    ensure!(default == "v2", "one new version: {versions:?}");
    let version = sdk(emu.rt.block_on(
        emu.iam
            .get_policy_version()
            .policy_arn(&boundary)
            .version_id(&default)
            .send(),
    ))?;
    let doc = urlencoding_decode(
        version
            .policy_version()
            .and_then(|v| v.document())
            .context("no document")?,
    );
    ensure!(
        doc.contains("aws:TokenIssueTime")
            && doc.contains(NOW)
            && doc.contains(&format!("arn:aws:ec2:{REGION}:{ACCOUNT}:instance/{id}")),
        "{doc}"
    );

    for attr in [
        ec2t::InstanceAttributeName::DisableApiTermination,
        ec2t::InstanceAttributeName::DisableApiStop,
    ] {
        let a = sdk(emu.rt.block_on(
            emu.ec2
                .describe_instance_attribute()
                .instance_id(&id)
                .attribute(attr.clone())
                .send(),
        ))?;
        let on = a
            .disable_api_termination()
            .or(a.disable_api_stop())
            .and_then(|v| v.value());
        ensure!(on == Some(true), "{attr:?} is not on");
    }
    let volumes: Vec<String> = inst
        .block_device_mappings()
        .iter()
        .filter_map(|b| b.ebs()?.volume_id().map(str::to_owned))
        .collect();
    ensure!(volumes.len() == 2, "{volumes:?}");
    ensure!(
        inst.block_device_mappings()
            .iter()
            .all(|b| b.ebs().and_then(|e| e.delete_on_termination()) == Some(false)),
        "a volume would be deleted with the instance"
    );
    let snaps = emu.case_snapshots(&case)?;
    let mut snapped: Vec<String> = snaps.into_iter().map(|(_, volume)| volume).collect();
    snapped.sort();
    let mut expected = volumes.clone();
    expected.sort();
    ensure!(
        snapped == expected,
        "snapshots of {snapped:?}, volumes {expected:?}"
    );

    let asg = sdk(emu.rt.block_on(
        emu.autoscaling
            .describe_auto_scaling_instances()
            .instance_ids(&id)
            .send(),
    ))?;
    ensure!(
        asg.auto_scaling_instances().is_empty(),
        "still in the Auto Scaling group"
    );
    let tg_arn = done["target_groups"][0].as_str().context("tg")?;
    let health = sdk(emu.rt.block_on(
        emu.elb
            .describe_target_health()
            .target_group_arn(tg_arn)
            .send(),
    ))?;
    ensure!(
        health
            .target_health_descriptions()
            .iter()
            .all(|d| d.target().and_then(|t| t.id()) != Some(id.as_str())),
        "still a load-balancer target"
    );

    let tags = emu.tags(&id)?;
    ensure!(
        tags.get("SecurityIncidentStatus").map(String::as_str) == Some("Contain")
            && tags.get("airf:contained") == Some(&case),
        "{tags:?}"
    );
    let messages = emu.messages()?;
    ensure!(
        messages
            .iter()
            .filter(|m| m.1.contains("instance contained"))
            .count()
            == 2,
        "{messages:?}"
    );

    // The Contain tag the controller just wrote comes back as an event: nothing happens.
    let echo = emu.ok(emu.tag_event(&id, "Contain"))?;
    ensure!(
        echo["execution_arn"].is_null()
            && echo["skipped"][0]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("already contained")),
        "{echo}"
    );
    ensure!(emu.executions()?.len() == 1);
    // A retried contain (Step Functions retries on throttling) changes nothing and adds no group.
    emu.ok(step("contain", &case, &subject, json!({})))?;
    let groups = emu.groups_named("airf-isolation")?;
    ensure!(groups.len() == 1, "a second isolation group");
    ensure!(
        emu.case_snapshots(&case)?.len() == volumes.len(),
        "a retried contain snapshotted again"
    );
    Ok(())
}

#[test]
fn events_for_other_accounts_and_malformed_tasks_change_nothing() -> Result<()> {
    let emu = Emulator::start("111111111111")?;
    let id = emu.instance(&[("SecurityIncidentStatus", "Analyze")])?;
    let before = emu.tags(&id)?;
    match emu.invoke(emu.tag_event(&id, "Analyze")) {
        Err(e)
            if e.kind().error_type() == "Airf.BadInput"
                && e.to_string().contains("member accounts") => {}
        other => bail!("an event of a non-member account must be rejected, got {other:?}"),
    }
    let subject = json!({"instance_id": id, "account": ACCOUNT, "region": REGION, "claim": 1});
    for bad in [
        json!({"action": "contain", "case_id": "IR-1", "subject": subject}),
        json!({"action": "contain", "case_id": "../x", "subject": {
            "instance_id": id, "account": "111111111111", "region": REGION, "claim": 1
        }}),
        json!({"action": "terminate", "case_id": "IR-1", "subject": subject}),
        json!({
            "detail-type": "Tag Change on Resource",
            "source": "aws.tag",
            "detail": "x".repeat(300_000)
        }),
    ] {
        match emu.invoke(bad.clone()) {
            Err(e) if e.kind().error_type() == "Airf.BadInput" => {}
            other => bail!("{bad:.200} was not rejected: {other:?}"),
        }
    }
    ensure!(emu.executions()?.is_empty(), "an execution was started");
    ensure!(emu.tags(&id)? == before, "tags changed");
    ensure!(
        emu.profile(&id)?.as_deref() == Some("WebServer"),
        "profile changed"
    );
    ensure!(emu.messages()?.is_empty(), "a notification was sent");
    Ok(())
}

/// The agent's real `memory` run on this host (no /proc/kcore): the instance's side of the
/// memory document, answered to the emulated GetCommandInvocation as the document prints it.
fn failing_memory_run(emu: &Emulator, case: &str, command_id: &str) -> Result<()> {
    let out = std::process::Command::new(agent_bin()?)
        .args([
            "memory",
            "--to",
            &format!("s3://{}/evidence", emu.server.bucket),
            "--case",
            case,
        ])
        .args([
            "--json",
            "--no-progress",
            "--endpoint-url",
            &emu.server.endpoint()?,
            "--region",
            REGION,
        ])
        .envs(emu.server.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()?;
    ensure!(
        !out.status.success(),
        "memory acquisition unexpectedly worked on this host"
    );
    let result: Value =
        serde_json::from_slice(&out.stdout).context("the agent printed no JSON result")?;
    emu.answer_command(
        command_id,
        "Failed",
        &result.to_string(),
        &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn workflow_started_by_hand_ends_in_error_when_memory_cannot_be_taken() -> Result<()> {
    let emu = Emulator::start("")?;
    let id = emu.instance(&[("Name", "web-1")])?;
    // The original framework's console input.
    let input = legacy_input("IR-2026-0042", &id);
    let run = emu.run_workflow(&input, |kind, command_id| {
        ensure!(kind == "memory", "{kind} acquisition after memory failed");
        failing_memory_run(&emu, "IR-2026-0042", command_id)
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
        "acquire_status",
        "acquire",
        "acquire_status",
        "fail",
    ])?;
    let tags = emu.tags(&id)?;
    ensure!(
        tags.get("SecurityIncidentStatus").map(String::as_str) == Some("Error"),
        "{tags:?}"
    );
    ensure!(
        tags.get("airf:case").map(String::as_str) == Some("IR-2026-0042"),
        "{tags:?}"
    );
    ensure!(
        tags.get("airf:reason")
            .is_some_and(|r| r.contains("memory acquisition")),
        "{tags:?}"
    );
    let subjects: Vec<String> = emu.messages()?.into_iter().map(|m| m.1).collect();
    ensure!(
        subjects
            .iter()
            .filter(|s| s.contains("investigation started"))
            .count()
            == 2,
        "{subjects:?}"
    );
    ensure!(
        subjects
            .iter()
            .filter(|s| s.contains("investigation FAILED"))
            .count()
            == 2,
        "{subjects:?}"
    );
    Ok(())
}

#[test]
fn workflow_contains_a_fleet_and_skips_the_instance_another_case_holds() -> Result<()> {
    let emu = Emulator::start("")?;
    let free = emu.instance(&[("Name", "web-1")])?;
    let held = emu.instance(&[
        ("Name", "web-2"),
        ("SecurityIncidentStatus", "InProgress"),
        ("airf:case", "IR-OTHER"),
    ])?;
    let run = emu.run_containment("IR-FLEET", &[&free, &held])?;
    run.ensure_succeeded()?;
    let statuses: Vec<&str> = run.outcome["output"]["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["status"].as_str())
        .collect();
    ensure!(statuses == ["contained", "skipped"], "{}", run.outcome);
    ensure!(
        run.outcome["output"]["instances"][1]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("IR-OTHER")),
        "{}",
        run.outcome
    );
    ensure!(
        emu.tags(&free)?
            .get("SecurityIncidentStatus")
            .map(String::as_str)
            == Some("Contain")
    );
    let held_tags = emu.tags(&held)?;
    ensure!(
        held_tags.get("SecurityIncidentStatus").map(String::as_str) == Some("InProgress")
            && held_tags.get("airf:case").map(String::as_str) == Some("IR-OTHER"),
        "{held_tags:?}"
    );
    ensure!(
        emu.profile(&held)?.as_deref() == Some("WebServer"),
        "the held instance was touched"
    );
    ensure!(
        emu.case_snapshots("IR-FLEET")?.len() == 2,
        "the contained instance's two volumes"
    );
    Ok(())
}

#[test]
fn workflow_rejects_an_input_it_does_not_know_and_changes_nothing() -> Result<()> {
    let emu = Emulator::start("")?;
    let id = emu.instance(&[("Name", "web-1")])?;
    let before = emu.tags(&id)?;
    let run = emu.run_workflow(&json!({"InstanceId": id, "Case": "x"}), |_, _| {
        bail!("nothing may be acquired")
    })?;
    run.ensure_failed("Airf.BadInput")?;
    ensure!(run.actions == ["normalize"], "{:?}", run.actions);
    ensure!(emu.tags(&id)? == before && emu.messages()?.is_empty());
    Ok(())
}
