//! The workflow's timing and scale, from the definition and through the interpreter:
//! - each polling loop keeps polling, whatever the retry jitter, at least as long as what it
//!   waits for can take: the SSM Agent's registration back-off, each document's ExecutionTimeout;
//! - each instance runs in its own child execution, whose history stays under 25,000 events;
//! - on simulated time (run-local.cjs): an instance online only after 30 minutes is still
//!   acquired, one that never registers ends in Error naming the fast path (without the
//!   snapshot task) or has its disks imaged from EBS snapshots by the real agent (with it), a
//!   stopped instance too, and a 100-instance fleet is claimed at once;
//! - the snapshot task's command line passes the agent's own rules for case ids and prefixes;
//! - after containment, each memory capture gets its Volatility symbol table in its folder, or
//!   `no_symbol_table` and why (a kernel without BTF), and a failed Symbols step leaves the
//!   instance contained with the error in its result.

use airf_controller::actions::acquire;
use airf_e2e::asl::{HISTORY_LIMIT, Workflow};
use airf_e2e::emulator::{ACCOUNT, Emulator, REGION, sdk};
use airf_e2e::guest_evidence::GuestEvidence;
use airf_e2e::planted_evidence::{NO_BTF, PlantedEvidence, SymbolInputs};
use airf_e2e::repo_root;
use airf_e2e::workflow_runner::{ECS_ACTION, TaskCall, World};
use anyhow::{Context, Result, bail, ensure};
use aws_sdk_ec2::types as ec2t;
use base64::Engine as _;
use serde_json::{Value, json};
use sha2::Digest as _;
use std::collections::BTreeMap;
use std::time::Instant;

/// The SSM Agent's longest registration back-off: after it is denied credentials (the
/// instance had no usable role, and the Default Host Management fallback was denied) it
/// sleeps 25 minutes plus up to 5 minutes of jitter (amazon-ssm-agent
/// core/app/credentialrefresher/credentialrefresher_deps.go, getLongSleepDuration, at
/// 1c217c8), then needs a poll interval to be seen: 35 minutes.
const AGENT_BACK_OFF_SECONDS: u64 = 35 * 60;

/// What SSM may add before a document's ExecutionTimeout starts to run: delivery to the agent
/// (already online) and the documents' aws:downloadContent steps, which run before the
/// shell step that the ExecutionTimeout bounds.
const DELIVERY_MARGIN_SECONDS: u64 = 600;

/// The Task states that poll with `Airf.Pending`, in the instance's order.
fn polling_tasks(workflow: &Workflow) -> Result<Vec<String>> {
    let map = workflow.instance_map()?;
    let mut found = Vec::new();
    for (name, state) in map.states {
        let handles_pending = ["Retry", "Catch"].iter().any(|key| {
            state[*key].as_array().into_iter().flatten().any(|rule| {
                rule["ErrorEquals"]
                    .as_array()
                    .is_some_and(|e| e.contains(&json!("Airf.Pending")))
            })
        });
        if state["Type"] == json!("Task") && handles_pending {
            found.push(name.clone());
        }
    }
    Ok(found)
}

/// The acquisition each polling Task waits for: the `kind` of the `acquire` Task before it
/// (None for the one that waits for SSM).
fn acquisition_polled_by(workflow: &Workflow, task: &str) -> Result<Option<String>> {
    let map = workflow.instance_map()?;
    Ok(map
        .states
        .values()
        .find(|s| {
            s.pointer("/Parameters/action") == Some(&json!("acquire"))
                && s.get("Next") == Some(&json!(task))
        })
        .map(|s| {
            s.pointer("/Parameters/kind")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        }))
}

/// The ExecutionTimeout the controller sends for `kind`, and the default of the generated
/// document it sends it to: both must be covered.
fn execution_timeouts(kind: &str) -> Result<(u64, u64)> {
    let vars = |k: &str| {
        Some(match k {
            "AIRF_STATE_MACHINE_ARN" => {
                format!("arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:airf-investigation")
            }
            "AIRF_INCIDENT_TOPIC_ARN" => format!("arn:aws:sns:{REGION}:{ACCOUNT}:airf-incident"),
            "AIRF_EVIDENCE_BUCKET" => "evidence".into(),
            "AIRF_EVIDENCE_REGION" => REGION.into(),
            "AIRF_ARTIFACT_BUCKET" => "artifacts".into(),
            "AIRF_AGENT_VERSION" => "0.1.0".into(),
            "AIRF_AGENT_SHA256" => "ab".repeat(32),
            "AIRF_SIGNING_KEY_ARN" => {
                format!("arn:aws:kms:{REGION}:{ACCOUNT}:key/00000000-0000-0000-0000-000000000001")
            }
            _ => return None,
        })
    };
    let config = airf_controller::Config::from_lookup(vars)?;
    // The workflow hands `kind` to the controller as this JSON string.
    let (document, _, parameters) =
        acquire::command(&config, "IR-1", &serde_json::from_value(json!(kind))?)?;
    let sent: u64 = parameters
        .get("ExecutionTimeout")
        .and_then(|v| v.first())
        .context("the controller sends no ExecutionTimeout")?
        .parse()?;
    let path = repo_root().join(format!("ssm-documents/{document}.json"));
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let doc: Value = serde_json::from_str(&text)?;
    let default: u64 = doc
        .pointer("/parameters/ExecutionTimeout/default")
        .and_then(Value::as_str)
        .context("the document has no ExecutionTimeout default")?
        .parse()?;
    Ok((sent, default))
}

#[test]
fn polling_loops_outlast_the_agent_back_off_and_the_documents_timeouts() -> Result<()> {
    let workflow = Workflow::repository()?;
    let map = workflow.instance_map()?;
    let tasks = polling_tasks(&workflow)?;
    ensure!(tasks.len() == 4, "polling tasks: {tasks:?}");
    let mut acquisitions = 0;
    for task in &tasks {
        let l = map.poll_loop(task, "Airf.Pending")?;
        let (what, needed) = match acquisition_polled_by(&workflow, task)? {
            None => (
                "the SSM Agent's registration back-off",
                AGENT_BACK_OFF_SECONDS,
            ),
            Some(kind) => {
                acquisitions += 1;
                let (sent, default) = execution_timeouts(&kind)?;
                (
                    "the ExecutionTimeout plus delivery",
                    sent.max(default) + DELIVERY_MARGIN_SECONDS,
                )
            }
        };
        ensure!(
            l.guaranteed_seconds >= needed,
            "{task} may give up after {} s ({} polls) with the retry jitter at its worst, \
             before {what} ({needed} s)",
            l.guaranteed_seconds,
            l.polls
        );
        // Giving up is recorded on the instance, with a reason, not a silent end; SSM's wait
        // gives up to the disks from snapshots when they are deployed.
        match (
            acquisition_polled_by(&workflow, task)?,
            l.gives_up_to.as_deref(),
        ) {
            (_, Some("RecordError")) => {}
            // A triage that never ends is recorded on the instance and memory comes next.
            (Some(kind), Some("AcquireMemory")) if kind == "triage" => {}
            (None, Some(choice)) => ensure_snapshot_fallback(&workflow, choice, &l)?,
            (_, other) => bail!("{task} gives up to {other:?}"),
        }
    }
    ensure!(
        acquisitions == 3,
        "triage, memory and disk pollers: {tasks:?}"
    );
    Ok(())
}

/// The Choice SSM's wait gives up to: to the snapshots (through a Pass that records why memory
/// was not acquired, naming the wait's real length) when deployed, else through a Pass that
/// sets the error to RecordError.
fn ensure_snapshot_fallback(
    workflow: &Workflow,
    choice: &str,
    l: &airf_e2e::asl::PollLoop,
) -> Result<()> {
    let map = workflow.instance_map()?;
    let state = map.states.get(choice).context("no such state")?;
    ensure!(
        state.get("Type") == Some(&json!("Choice")),
        "{choice}: {state}"
    );
    let next = |name: &str| -> Result<&Value> {
        map.states
            .get(name)
            .with_context(|| format!("no state {name}"))
    };
    let fallback_name = state
        .pointer("/Choices/0/Next")
        .and_then(Value::as_str)
        .context("no choice")?;
    let fallback = next(fallback_name)?;
    let why = fallback
        .pointer("/Parameters/not_acquired")
        .and_then(Value::as_str)
        .unwrap_or("");
    ensure!(
        fallback.get("Type") == Some(&json!("Pass"))
            && fallback.pointer("/Parameters/kind") == Some(&json!("memory"))
            && why.contains(&format!("{} s", l.guaranteed_seconds))
            && fallback.get("Next") == Some(&json!("SnapshotPlan")),
        "{fallback_name}: {fallback} (the wait is {} s)",
        l.guaranteed_seconds
    );
    let default_name = state
        .get("Default")
        .and_then(Value::as_str)
        .context("no Default")?;
    let default = next(default_name)?;
    ensure!(
        default.get("Type") == Some(&json!("Pass"))
            && default.get("Next") == Some(&json!("RecordError")),
        "{default_name}: {default}"
    );
    Ok(())
}

#[test]
fn each_instance_runs_in_its_own_child_execution_under_the_history_limit() -> Result<()> {
    let workflow = Workflow::repository()?;
    let map = workflow.instance_map()?;
    // One child execution per instance: its own 25,000 events, and no batch of ten at a time.
    ensure!(map.mode() == "DISTRIBUTED", "the Map runs {}", map.mode());
    // Standard: an Express child ends after 5 minutes, a disk acquisition takes hours.
    let processor = &map.state["ItemProcessor"]["ProcessorConfig"];
    ensure!(
        processor["ExecutionType"] == json!("STANDARD"),
        "{processor}"
    );
    // The whole test fleet at once (0 would be Step Functions' default of 10,000).
    let concurrency = map.state["MaxConcurrency"].as_u64().unwrap_or(0);
    ensure!(
        concurrency == 0 || concurrency >= 100,
        "MaxConcurrency {concurrency}"
    );
    // A failed instance never stops another's containment: the Map Run tolerates every
    // failure, and Summarize fails the execution afterwards.
    ensure!(
        map.state["ToleratedFailurePercentage"] == json!(100),
        "ToleratedFailurePercentage {}",
        map.state["ToleratedFailurePercentage"]
    );

    let loops = polling_tasks(&workflow)?
        .iter()
        .map(|t| map.poll_loop(t, "Airf.Pending"))
        .collect::<Result<Vec<_>>>()?;
    let events = map.worst_case_history(&loops)?;
    eprintln!("worst-case history of one instance's child execution: {events} events");
    ensure!(
        events < HISTORY_LIMIT,
        "one instance's execution may reach {events} history events, over {HISTORY_LIMIT}"
    );
    Ok(())
}

/// An instance whose SSM Agent registers once its clock reaches `online_at` seconds (never
/// when None). Its commands are answered with the guest's real evidence when there is one,
/// else they fail at once, as on an instance without the evidence.
struct LateAgent<'a> {
    emu: &'a Emulator,
    online_at: Option<u64>,
    evidence: Option<&'a GuestEvidence>,
}

impl World for LateAgent<'_> {
    fn before_task(&self, action: &str, payload: &Value, simulated_seconds: u64) -> Result<()> {
        if action == "managed" {
            let id = payload
                .pointer("/subject/instance_id")
                .and_then(Value::as_str)
                .context("managed without an instance")?;
            let online = self.online_at.is_some_and(|t| simulated_seconds >= t);
            self.emu.set_ssm_registered(id, online)?;
        }
        Ok(())
    }

    fn instance_side(&self, kind: &str, command_id: &str) -> Result<()> {
        if let Some(evidence) = self.evidence {
            return evidence.answer(self.emu, kind, command_id);
        }
        self.emu.answer_command(
            command_id,
            "Failed",
            "",
            &format!("test: no {kind} evidence on this instance"),
        )
    }
}

fn investigate(case: &str, ids: &[String]) -> Value {
    let subjects: Vec<Value> = ids
        .iter()
        .map(|id| json!({"instance_id": id, "account": ACCOUNT, "region": REGION, "claim": 1}))
        .collect();
    json!({
        "case_id": case,
        "intent": "investigate",
        "trigger": "console",
        "retain_artefacts": true,
        "instances": subjects
    })
}

fn calls_of<'a>(calls: &'a [TaskCall], action: &str) -> Vec<&'a TaskCall> {
    calls.iter().filter(|c| c.action == action).collect()
}

#[test]
fn an_instance_online_only_after_30_simulated_minutes_is_still_acquired() -> Result<()> {
    let emu = Emulator::start("")?;
    let id = emu.instance(&[("Name", "web-1")])?;
    emu.set_ssm_registered(&id, false)?;
    let world = LateAgent {
        emu: &emu,
        online_at: Some(30 * 60),
        evidence: None,
    };
    let run = emu.run_workflow_in(&investigate("IR-LATE", std::slice::from_ref(&id)), &world)?;

    let online = waited_until_online(&run.calls, 30 * 60)?;
    // Then the acquisition runs, on the same clock: what ends it is the instance's answer.
    // (triage first, then memory, which this instance cannot give)
    let sent = calls_of(&run.calls, "acquire");
    ensure!(
        sent.len() == 2 && sent.iter().all(|c| c.simulated_seconds >= online),
        "{:?}",
        run.calls
    );
    // The triage's headline reached the responder before memory was even asked for.
    let messages = emu.messages()?;
    ensure!(
        messages
            .iter()
            .any(|m| m.1.contains("triage: what is running")
                && m.2.contains("UID 0 accounts: root")
                && m.2.contains("processes.")
                && m.2.contains("triage.manifest.json")),
        "no triage notification: {messages:?}"
    );
    let tags = emu.tags(&id)?;
    ensure!(
        tags.get("airf:reason")
            .is_some_and(|r| r.starts_with("Airf.Failed: memory acquisition")),
        "the run ended for another reason than the instance's memory answer: {tags:?}"
    );
    Ok(())
}

/// `managed` answered Airf.Pending before `online_at` simulated seconds and then succeeded:
/// when it did.
fn waited_until_online(calls: &[TaskCall], online_at: u64) -> Result<u64> {
    let managed = calls_of(calls, "managed");
    let (last, before) = managed.split_last().context("managed was never called")?;
    ensure!(
        last.error.is_none() && last.simulated_seconds >= online_at,
        "the instance came online at {online_at} simulated seconds, yet: {managed:?}"
    );
    ensure!(
        before
            .iter()
            .all(|c| c.error.as_deref() == Some("Airf.Pending") && c.simulated_seconds < online_at),
        "{managed:?}"
    );
    Ok(last.simulated_seconds)
}

#[test]
#[ignore = "boots a VM; run by tests/vm/run-tests.sh"]
fn an_instance_online_only_after_30_simulated_minutes_reaches_containment() -> Result<()> {
    let emu = Emulator::start("")?;
    let id = emu.instance(&[("Name", "web-1")])?;
    emu.set_ssm_registered(&id, false)?;
    let case = "IR-LATE-VM";
    let evidence = GuestEvidence::acquire(&emu, &id, case)?;
    let world = LateAgent {
        emu: &emu,
        online_at: Some(30 * 60),
        evidence: Some(&evidence),
    };
    let run = emu.run_workflow_in(&investigate(case, std::slice::from_ref(&id)), &world)?;
    run.ensure_succeeded()?;
    let online = waited_until_online(&run.calls, 30 * 60)?;
    let tail: Vec<&str> = run
        .calls
        .iter()
        .skip_while(|c| c.action != "acquire")
        .map(|c| c.action.as_str())
        .collect();
    ensure!(
        tail == [
            "acquire",
            "acquire_status",
            "acquire",
            "acquire_status",
            "acquire",
            "acquire_status",
            "verify",
            "contain",
            "symbols"
        ],
        "after coming online at {online} s: {tail:?}"
    );
    let result = &run.outcome["output"]["instances"][0];
    ensure!(result["status"] == json!("contained"), "{result}");
    emu.ensure_status(&id, "Contain")?;
    Ok(())
}

#[test]
fn an_instance_that_never_registers_ends_in_error_naming_the_fast_path() -> Result<()> {
    let mut emu = Emulator::start("")?;
    // A deployment without the snapshot task: nothing to fall back to.
    emu.config.snapshot = None;
    let id = emu.instance(&[("Name", "web-1")])?;
    emu.set_ssm_registered(&id, false)?;
    let world = LateAgent {
        emu: &emu,
        online_at: None,
        evidence: None,
    };
    let run = emu.run_workflow_in(&investigate("IR-NEVER", std::slice::from_ref(&id)), &world)?;
    run.ensure_failed("Airf.Failed")?;
    let workflow = Workflow::repository()?;
    let budget = workflow
        .instance_map()?
        .poll_loop("WaitUntilManaged", "Airf.Pending")?;
    let managed = calls_of(&run.calls, "managed");
    ensure!(
        managed.len() as u64 == budget.polls
            && managed
                .last()
                .is_some_and(|c| c.simulated_seconds == budget.guaranteed_seconds),
        "{} polls, the last at {:?} s; the definition says {budget:?}",
        managed.len(),
        managed.last().map(|c| c.simulated_seconds)
    );
    ensure!(
        run.actions[run.actions.len() - 1] == "fail" && !run.actions.contains(&"acquire".into()),
        "{:?}",
        run.actions
    );

    let output = &run.outcome;
    let tags = emu.tags(&id)?;
    let reason = tags.get("airf:reason").context("no airf:reason")?;
    ensure!(
        tags.get("SecurityIncidentStatus").map(String::as_str) == Some("Error")
            && reason.starts_with("Airf.Timeout:")
            && reason.contains("sudo systemctl restart amazon-ssm-agent")
            && reason.contains("reboot"),
        "{tags:?} {output}"
    );
    // Both notifications: the one at prepare tells the fast path before the wait, with the
    // wait the definition really has; the failure tells it again.
    let minutes = budget.guaranteed_seconds / 60;
    let messages = emu.messages()?;
    for (subject, needle) in [
        (
            "investigation started",
            format!("airf waits {minutes} minutes"),
        ),
        (
            "investigation FAILED",
            "restart amazon-ssm-agent".to_owned(),
        ),
    ] {
        ensure!(
            messages.iter().any(|m| m.1.contains(subject)
                && m.2.contains(&needle)
                && m.2.contains("sudo systemctl restart amazon-ssm-agent")),
            "no {subject:?} message with {needle:?}: {messages:?}"
        );
    }
    Ok(())
}

#[test]
fn a_fleet_of_100_is_claimed_at_once_and_each_instance_reaches_its_acquisition() -> Result<()> {
    const FLEET: usize = 100;
    let emu = Emulator::start("")?;
    let clock = Instant::now();
    let ids = fleet(&emu, FLEET)?;
    let made = clock.elapsed();
    let world = LateAgent {
        emu: &emu,
        online_at: Some(0),
        evidence: None,
    };
    let run = emu.run_workflow_in(&investigate("IR-FLEET", &ids), &world)?;
    eprintln!(
        "{FLEET} instances: made in {made:?}, workflow ({} Task calls) in {:?}",
        run.calls.len(),
        clock.elapsed() - made
    );

    // Nobody waits for another's acquisition: every claim comes before the first acquisition
    // ends (an acquire_status that is not Airf.Pending).
    let first_end = run
        .calls
        .iter()
        .position(|c| c.action == "acquire_status" && c.error.as_deref() != Some("Airf.Pending"))
        .context("no acquisition ended")?;
    let claims: Vec<usize> = run
        .calls
        .iter()
        .enumerate()
        .filter(|(_, c)| c.action == "claim")
        .map(|(i, _)| i)
        .collect();
    ensure!(claims.len() == FLEET, "{} claims", claims.len());
    if let Some(late) = claims.iter().find(|&&i| i > first_end) {
        bail!(
            "{} was claimed only after {}'s acquisition ended",
            run.calls[*late].instance_id,
            run.calls[first_end].instance_id
        );
    }
    for id in &ids {
        ensure!(
            run.calls
                .iter()
                .any(|c| c.action == "acquire" && &c.instance_id == id && c.error.is_none()),
            "{id} never reached its acquisition"
        );
    }

    // Each instance ended as its own run decided, and the execution says some failed.
    run.ensure_failed("Airf.Failed")?;
    let errors = calls_of(&run.calls, "fail");
    ensure!(errors.len() == FLEET, "{} instances recorded", errors.len());
    for id in ids.iter().step_by(10) {
        let tags = emu.tags(id)?;
        ensure!(
            tags.get("SecurityIncidentStatus").map(String::as_str) == Some("Error")
                && tags.get("airf:case").map(String::as_str) == Some("IR-FLEET"),
            "{id}: {tags:?}"
        );
    }
    Ok(())
}

/// `n` running web servers (profile WebServer) launched by one RunInstances: one call per
/// instance costs moto about a second each on a busy machine.
fn fleet(emu: &Emulator, n: usize) -> Result<Vec<String>> {
    let count = i32::try_from(n)?;
    let ami = emu.rt.block_on(emu.ami())?;
    let run = sdk(emu.rt.block_on(
        emu.ec2
            .run_instances()
            .image_id(ami)
            .instance_type(ec2t::InstanceType::T3Micro)
            .min_count(count)
            .max_count(count)
            .subnet_id(&emu.subnet)
            .iam_instance_profile(
                ec2t::IamInstanceProfileSpecification::builder()
                    .name("WebServer")
                    .build(),
            )
            .tag_specifications(
                ec2t::TagSpecification::builder()
                    .resource_type(ec2t::ResourceType::Instance)
                    .tags(ec2t::Tag::builder().key("Name").value("web-fleet").build())
                    .build(),
            )
            .send(),
    ))?;
    let ids: Vec<String> = run
        .instances()
        .iter()
        .filter_map(|i| i.instance_id().map(str::to_owned))
        .collect();
    ensure!(ids.len() == n, "RunInstances made {} instances", ids.len());
    Ok(ids)
}

/// Instances one execution is built to take: its input and output carry every instance, and
/// Step Functions refuses a state payload over 256 KiB (States.DataLimitExceeded).
const FLEET_PER_EXECUTION: usize = 500;
const PAYLOAD_LIMIT: usize = 256 * 1024;

#[test]
fn a_contained_fleets_summary_fits_the_payload_limit_at_500_instances() -> Result<()> {
    let emu = Emulator::start("")?;
    let ids = fleet(&emu, 3)?;
    let mut input = investigate("IR-SUMMARY", &ids);
    input["intent"] = json!("contain");
    let world = LateAgent {
        emu: &emu,
        online_at: Some(0),
        evidence: None,
    };
    let run = emu.run_workflow_in(&input, &world)?;
    run.ensure_succeeded()?;
    let entries = run.outcome["output"]["instances"]
        .as_array()
        .context("no instances in the output")?;
    ensure!(
        entries.len() == ids.len() && entries.iter().all(|e| e["status"] == json!("contained")),
        "{}",
        run.outcome
    );
    // The largest payload is the Map state's output: the execution's input, every instance's
    // entry and its status.
    let per_instance = (input.to_string().len() + run.outcome["output"].to_string().len())
        .div_ceil(ids.len())
        + r#""contained","#.len();
    ensure!(
        per_instance * FLEET_PER_EXECUTION <= PAYLOAD_LIMIT,
        "{per_instance} bytes per instance: {FLEET_PER_EXECUTION} instances would pass \
         {PAYLOAD_LIMIT} bytes; an entry: {}",
        entries[0]
    );
    // What the VM test and the responders read from it.
    ensure!(
        entries.iter().all(|e| e["containment"]["snapshots"]
            .as_array()
            .is_some_and(|s| s.len() == 1)
            && e["containment"]["isolation_group"].is_string()),
        "{}",
        run.outcome
    );
    Ok(())
}

// ------------------------------------------------------------ disks from EBS snapshots

/// Bytes per EBS block (the EBS direct APIs' BlockSize).
const EBS_BLOCK: usize = 512 * 1024;
/// The test's volumes: the smallest EBS volume, so the agent reads them in seconds.
const VOLUME_GIB: i32 = 1;

/// The snapshot task as template 3 deploys it, named in the emulator's account and subnet
/// (unless the rendered templates set it already).
fn deploy_snapshot_task(emu: &mut Emulator) -> Result<()> {
    if emu.config.snapshot.is_some() {
        return Ok(());
    }
    let group = sdk(emu.rt.block_on(
        emu.ec2
            .create_security_group()
            .group_name("airf-snapshot-task")
            .description("airf snapshot task: egress 443")
            .vpc_id(&emu.vpc)
            .send(),
    ))?
    .group_id()
    .context("no group id")?
    .to_owned();
    emu.config.snapshot = Some(airf_controller::config::SnapshotTask {
        cluster_arn: format!("arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/airf"),
        task_definition_arn: format!(
            "arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/airf-snapshot:1"
        ),
        subnet_ids: vec![emu.subnet.clone()],
        security_group_id: group,
        reader_role_name: "AirfSnapshotReader".into(),
    });
    Ok(())
}

/// A web server with two 1 GiB EBS volumes (root /dev/xvda and data /dev/sdf), each with
/// content planted where moto_ebs.py serves a CreateSnapshot's blocks from: (instance id,
/// volume id → SHA-256 of the whole volume).
fn instance_with_planted_volumes(emu: &Emulator) -> Result<(String, BTreeMap<String, String>)> {
    let ami = emu.rt.block_on(emu.ami())?;
    let run = sdk(emu.rt.block_on(
        emu.ec2
            .run_instances()
            .image_id(ami)
            .instance_type(ec2t::InstanceType::T3Micro)
            .min_count(1)
            .max_count(1)
            .subnet_id(&emu.subnet)
            .iam_instance_profile(
                ec2t::IamInstanceProfileSpecification::builder()
                    .name(airf_e2e::emulator::SUSPECT_PROFILE)
                    .build(),
            )
            .send(),
    ))?;
    let instance = run.instances().first().context("no instance")?;
    let id = instance.instance_id().context("no instance id")?.to_owned();
    // Its 8 GiB root volume swapped for two 1 GiB ones. (Block device mappings would do it in
    // RunInstances, but moto reads their Encrypted=false as true, and then names no KMS key.)
    for mapping in instance.block_device_mappings() {
        let (Some(device), Some(root)) = (
            mapping.device_name(),
            mapping.ebs().and_then(|e| e.volume_id()),
        ) else {
            continue;
        };
        // moto needs the instance and device to detach (EC2 takes the volume alone).
        sdk(emu.rt.block_on(
            emu.ec2
                .detach_volume()
                .volume_id(root)
                .instance_id(&id)
                .device(device)
                .send(),
        ))?;
    }
    let mut volumes = Vec::new();
    for device in ["/dev/xvda", "/dev/sdf"] {
        let volume = sdk(emu.rt.block_on(
            emu.ec2
                .create_volume()
                .availability_zone(&emu.az)
                .size(VOLUME_GIB)
                .send(),
        ))?
        .volume_id()
        .context("no volume id")?
        .to_owned();
        sdk(emu.rt.block_on(
            emu.ec2
                .attach_volume()
                .device(device)
                .instance_id(&id)
                .volume_id(&volume)
                .send(),
        ))?;
        volumes.push(volume);
    }
    let dir = std::path::PathBuf::from(
        emu.server
            .env
            .iter()
            .find(|(k, _)| k == "AIRF_SSM_OUTPUT_DIR")
            .map(|(_, v)| v.clone())
            .context("no AIRF_SSM_OUTPUT_DIR")?,
    )
    .join("ebs-volumes");
    std::fs::create_dir_all(&dir)?;
    let mut hashes = BTreeMap::new();
    for (n, volume) in volumes.iter().enumerate() {
        // Blocks 0 and 5 written (distinct per volume), 1 to 4 and the rest of the GiB zeros:
        // the snapshot lists two blocks, and the image must still be the whole volume.
        let mut content = vec![0u8; 6 * EBS_BLOCK];
        for (i, b) in content.iter_mut().enumerate() {
            let block = i / EBS_BLOCK;
            if block == 0 || block == 5 {
                *b = ((i / 4096 + n * 7 + block) % 251) as u8 | 1;
            }
        }
        let path = dir.join(format!("{volume}.img"));
        std::fs::write(&path, &content)?;
        // The whole volume's hash: the content, then zeros to 1 GiB (sha256sum of a sparse
        // copy; hashing a GiB in a debug build takes too long).
        let whole = tempfile::NamedTempFile::new()?;
        std::fs::write(whole.path(), &content)?;
        whole.as_file().set_len(u64::try_from(VOLUME_GIB)? << 30)?;
        let out = airf_e2e::run_ok(std::process::Command::new("sha256sum").arg(whole.path()))?;
        let hash = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .context("sha256sum printed nothing")?
            .to_owned();
        hashes.insert(volume.clone(), hash);
    }
    Ok((id, hashes))
}

/// The disk manifests stored for the instance: (key, manifest JSON).
fn disk_manifests(emu: &Emulator, case: &str, id: &str) -> Result<Vec<(String, Value)>> {
    let mut found = Vec::new();
    for key in emu.server.keys(&format!("evidence/{case}/{id}/"))? {
        // The control-plane manifest (before containment) lists API answers, not images.
        if !key.ends_with(".manifest.json") || key.contains("/control-plane/") {
            continue;
        }
        let manifest: Value = serde_json::from_slice(&emu.server.get(&key)?)?;
        found.push((key, manifest));
    }
    Ok(found)
}

/// What a case imaged from snapshots must show: the snapshot tasks ran the agent with the
/// planned command and exited 0; each volume's image is the volume, byte for byte (its raw
/// SHA-256), proven again by `airf-agent verify`; the snapshots are the case's; the instance is
/// contained, with memory recorded as not acquired and why.
fn ensure_disks_from_snapshots(
    emu: &Emulator,
    run: &airf_e2e::workflow_runner::WorkflowRun,
    case: &str,
    id: &str,
    volumes: &BTreeMap<String, String>,
    memory_reason: &str,
) -> Result<()> {
    for task in &run.snapshot_tasks {
        ensure!(
            task.exit_code == Some(0),
            "airf-agent {:?} exited {:?}:\n{}\n{}",
            task.command,
            task.exit_code,
            task.stdout,
            task.stderr
        );
    }
    run.ensure_succeeded()?;
    let snapshots = emu.case_snapshots(case)?;
    ensure!(
        snapshots.len() == volumes.len() && snapshots.iter().all(|(_, v)| volumes.contains_key(v)),
        "case snapshots {snapshots:?}, volumes {volumes:?}"
    );
    ensure!(
        run.snapshot_tasks.len() == volumes.len(),
        "{:?}",
        run.snapshot_tasks
    );
    for task in &run.snapshot_tasks {
        let snapshot = task.command.get(1).context("no snapshot in the command")?;
        ensure!(
            snapshots.iter().any(|(s, _)| s == snapshot),
            "task read {snapshot}, not a case snapshot: {snapshots:?}"
        );
    }
    let result = run
        .outcome
        .pointer("/output/instances/0")
        .with_context(|| format!("{}", run.outcome))?;
    ensure!(
        result.get("status") == Some(&json!("contained")),
        "{result}"
    );
    let not_acquired = result.pointer("/not_acquired").unwrap_or(&Value::Null);
    ensure!(
        not_acquired.as_array().is_some_and(|a| a.len() == 1)
            && not_acquired.pointer("/0/kind") == Some(&json!("memory"))
            && not_acquired
                .pointer("/0/not_acquired")
                .and_then(Value::as_str)
                .is_some_and(|w| w.contains(memory_reason)),
        "{result}"
    );
    ensure!(
        result.pointer("/custody/signatures") == Some(&json!(volumes.len())),
        "{result}"
    );
    // No memory, no symbol table: the Symbols step ran and had nothing to do.
    ensure!(
        result.pointer("/symbols/images") == Some(&json!([])),
        "{result}"
    );
    emu.ensure_status(id, "Contain")?;
    let tags = emu.tags(id)?;
    ensure!(
        tags.get("airf:memory")
            .is_some_and(|m| m.starts_with("not acquired:") && m.contains(memory_reason)),
        "{tags:?}"
    );

    let manifests = disk_manifests(emu, case, id)?;
    ensure!(manifests.len() == volumes.len(), "{manifests:?}");
    let snapshot_of: BTreeMap<&str, &str> = snapshots
        .iter()
        .map(|(s, v)| (s.as_str(), v.as_str()))
        .collect();
    let agent = airf_e2e::agent_bin()?;
    for (key, manifest) in &manifests {
        ensure!(
            manifest.get("kind") == Some(&json!("disk"))
                && manifest.get("case") == Some(&json!(case)),
            "{manifest}"
        );
        let snapshot = key
            .rsplit('/')
            .next()
            .and_then(|n| n.strip_suffix(".manifest.json"))
            .context("manifest name")?;
        let volume = snapshot_of
            .get(snapshot)
            .with_context(|| format!("{key} is not the image of a case snapshot"))?;
        ensure!(
            manifest.pointer("/raw/sha256").and_then(Value::as_str)
                == volumes.get(*volume).map(String::as_str),
            "{key}: raw SHA-256 {:?} where volume {volume} hashes to {:?}",
            manifest.pointer("/raw/sha256"),
            volumes.get(*volume)
        );
        ensure!(
            manifest.pointer("/raw/size") == Some(&json!(u64::try_from(VOLUME_GIB)? << 30)),
            "{manifest}"
        );
        let uri = format!("s3://{}/{key}", emu.server.bucket);
        airf_e2e::run_ok(emu.server.command(&agent).arg("verify").arg(&uri))
            .with_context(|| format!("airf-agent verify {uri}"))?;
    }
    let messages = emu.messages()?;
    ensure!(
        messages
            .iter()
            .any(|m| m.1.contains("disks from EBS snapshots")
                && m.2.contains("Memory was NOT acquired")
                && m.2.contains(memory_reason)),
        "{messages:?}"
    );
    Ok(())
}

/// Issue 14, test 3: an instance SSM never reaches is not an Error when the snapshot task is
/// deployed: after SSM's whole wait, its volumes are snapshotted (tagged with the case) and
/// imaged by the real agent in one task each, verified, countersigned, and the instance
/// contained; memory is recorded as not acquired, with the wait.
#[test]
fn an_unmanaged_instance_ends_with_disk_evidence_from_snapshots_and_a_verified_case() -> Result<()>
{
    let mut emu = Emulator::start("")?;
    deploy_snapshot_task(&mut emu)?;
    let (id, volumes) = instance_with_planted_volumes(&emu)?;
    emu.set_ssm_registered(&id, false)?;
    let world = LateAgent {
        emu: &emu,
        online_at: None,
        evidence: None,
    };
    let case = "IR-SNAP";
    let run = emu.run_workflow_in(&investigate(case, std::slice::from_ref(&id)), &world)?;
    let budget = Workflow::repository()?
        .instance_map()?
        .poll_loop("WaitUntilManaged", "Airf.Pending")?;
    ensure_disks_from_snapshots(
        &emu,
        &run,
        case,
        &id,
        &volumes,
        &format!("not SSM-managed within {} s", budget.guaranteed_seconds),
    )?;
    let managed = calls_of(&run.calls, "managed");
    ensure!(
        managed.len() as u64 == budget.polls,
        "{} polls",
        managed.len()
    );
    // The controller's, the snapshot task role's and the reader role's calls, as the templates
    // allow them.
    emu.check_iam()?;
    let tail: Vec<&str> = run
        .actions
        .iter()
        .skip_while(|a| *a != "snapshot_plan")
        .map(String::as_str)
        .collect();
    ensure!(
        tail == [
            "snapshot_plan",
            ECS_ACTION,
            ECS_ACTION,
            "snapshot_results",
            "verify",
            "contain",
            "symbols"
        ] && !run.actions.iter().any(|a| a == "acquire" || a == "fail"),
        "{:?}",
        run.actions
    );
    Ok(())
}

/// A stopped instance: no SSM wait, straight to its snapshots.
#[test]
fn a_stopped_instance_has_its_disks_imaged_from_snapshots() -> Result<()> {
    let mut emu = Emulator::start("")?;
    deploy_snapshot_task(&mut emu)?;
    let (id, volumes) = instance_with_planted_volumes(&emu)?;
    sdk(emu
        .rt
        .block_on(emu.ec2.stop_instances().instance_ids(&id).send()))?;
    let world = LateAgent {
        emu: &emu,
        online_at: None,
        evidence: None,
    };
    let case = "IR-STOPPED";
    let run = emu.run_workflow_in(&investigate(case, std::slice::from_ref(&id)), &world)?;
    ensure_disks_from_snapshots(&emu, &run, case, &id, &volumes, "stopped")?;
    ensure!(
        !run.actions.iter().any(|a| a == "managed" || a == "acquire"),
        "{:?}",
        run.actions
    );
    // Contained like any other: the deny-all profile (prepare left the profile alone; its unit
    // test checks it makes no call on a stopped instance).
    ensure!(
        emu.profile(&id)?.as_deref() == Some(emu.config.isolation_profile_name.as_str()),
        "{:?}",
        emu.profile(&id)?
    );
    Ok(())
}

/// An agent that fails (every read of block 0 corrupted: the checksum does not match) fails
/// its task (States.TaskFailed): the instance ends in Error naming the snapshot and the volume,
/// not contained as if its disks had been imaged.
#[test]
fn a_snapshot_task_that_fails_ends_the_instance_in_error_naming_it() -> Result<()> {
    let mut emu = Emulator::start("")?;
    deploy_snapshot_task(&mut emu)?;
    let (id, _) = instance_with_planted_volumes(&emu)?;
    sdk(emu
        .rt
        .block_on(emu.ec2.stop_instances().instance_ids(&id).send()))?;
    emu.inject_fault("ebs:GetSnapshotBlock:0", "CorruptBlock", 1000)?;
    let world = LateAgent {
        emu: &emu,
        online_at: None,
        evidence: None,
    };
    let run = emu.run_workflow_in(
        &investigate("IR-SNAPFAIL", std::slice::from_ref(&id)),
        &world,
    )?;
    run.ensure_failed("Airf.Failed")?;
    ensure!(
        !run.snapshot_tasks.is_empty()
            && run
                .snapshot_tasks
                .iter()
                .all(|t| t.exit_code.is_some_and(|c| c != 0)),
        "{:?}",
        run.snapshot_tasks
    );
    ensure!(
        !run.actions.iter().any(|a| a == "verify" || a == "contain")
            && run.actions.last().map(String::as_str) == Some("fail"),
        "{:?}",
        run.actions
    );
    let tags = emu.tags(&id)?;
    let reason = tags.get("airf:reason").context("no airf:reason")?;
    eprintln!("airf:reason: {reason}");
    ensure!(
        tags.get("SecurityIncidentStatus").map(String::as_str) == Some("Error")
            && reason.starts_with("Airf.Failed: airf-agent snapshot snap-")
            && reason.contains("States.TaskFailed"),
        "{tags:?}"
    );
    Ok(())
}

/// The snapshot task's command line passes the agent's own rules (agent/src/naming.rs) for
/// every case id the controller accepts and every evidence prefix its configuration accepts:
/// names the agent would refuse (exit 2) never reach a task. Generated, not listed: letters,
/// digits, the separators and the characters that trip prefixes (`.`, `/`, `%2e`, controls).
#[test]
fn snapshot_commands_pass_the_agents_naming_rules() -> Result<()> {
    use airf_agent::naming::{check_case_id, check_prefix};
    const PIECES: &[&str] = &[
        "a", "Z", "7", ".", "..", "_", "-", "/", "//", "%2e", "%2E", " ", "\n", "é", "IR-2026",
    ];
    let base = |k: &str| -> Option<String> {
        Some(match k {
            "AIRF_STATE_MACHINE_ARN" => format!("arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:a"),
            "AIRF_INCIDENT_TOPIC_ARN" => format!("arn:aws:sns:{REGION}:{ACCOUNT}:a"),
            "AIRF_EVIDENCE_BUCKET" => "evidence".into(),
            "AIRF_EVIDENCE_REGION" => REGION.into(),
            "AIRF_ARTIFACT_BUCKET" => "artifacts".into(),
            "AIRF_AGENT_VERSION" => "0.1.0".into(),
            "AIRF_AGENT_SHA256" => "ab".repeat(32),
            "AIRF_SIGNING_KEY_ARN" => {
                format!("arn:aws:kms:{REGION}:{ACCOUNT}:key/00000000-0000-0000-0000-000000000001")
            }
            "AIRF_SNAPSHOT_CLUSTER_ARN" => format!("arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/airf"),
            "AIRF_SNAPSHOT_TASK_DEFINITION_ARN" => {
                format!("arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/airf-snapshot:1")
            }
            "AIRF_SNAPSHOT_SUBNET_IDS" => "subnet-0123456789abcdef0".into(),
            "AIRF_SNAPSHOT_SECURITY_GROUP_ID" => "sg-0123456789abcdef0".into(),
            _ => return None,
        })
    };
    let target = airf_controller::model::Target {
        instance_id: "i-0123456789abcdef0".into(),
        account: "111111111111".into(),
        region: "eu-west-1".into(),
    };
    // A small linear congruential generator: the same strings on every run.
    let mut seed: u64 = 0x2026_1202;
    let mut word = |max: usize| {
        let mut w = String::new();
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        for _ in 0..(seed >> 33) as usize % (max + 1) {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            w.push_str(PIECES[(seed >> 33) as usize % PIECES.len()]);
        }
        w
    };
    let (mut cases_tried, mut prefixes_tried) = (0, 0);
    for _ in 0..20_000 {
        let case = word(6);
        let prefix = word(6);
        let config = airf_controller::Config::from_lookup(|k| {
            if k == "AIRF_EVIDENCE_PREFIX" {
                return Some(prefix.clone());
            }
            base(k)
        });
        let Ok(config) = config else { continue };
        let task = config
            .snapshot
            .clone()
            .context("the snapshot task is configured")?;
        let command = airf_controller::actions::snapshots::command(
            &config,
            &task,
            &case,
            &target,
            "snap-0123456789abcdef0",
        );
        let after = |flag: &str| {
            command
                .iter()
                .position(|a| a == flag)
                .and_then(|i| command.get(i + 1))
                .cloned()
                .unwrap_or_default()
        };
        let to = after("--to");
        let key_prefix = to
            .strip_prefix("s3://evidence/")
            .with_context(|| format!("--to {to}"))?;
        check_prefix(key_prefix)
            .map_err(|e| anyhow::anyhow!("prefix {prefix:?} → --to {to}: {e}"))?;
        prefixes_tried += 1;
        if airf_controller::model::is_case_id(&case) {
            check_case_id(&after("--case")).map_err(|e| anyhow::anyhow!("case {case:?}: {e}"))?;
            cases_tried += 1;
        }
    }
    // The generator reaches both kinds often enough to mean something.
    ensure!(
        cases_tried > 500 && prefixes_tried > 500,
        "{cases_tried} cases, {prefixes_tried} prefixes"
    );
    Ok(())
}

/// A snapshot task whose container never started (ECS reports no exit code): the workflow's
/// own exit-code check fails the instance, rather than read on as if the agent had run.
#[test]
fn a_snapshot_task_that_never_ran_is_not_taken_for_success() -> Result<()> {
    struct NoImage<'a>(LateAgent<'a>);
    impl World for NoImage<'_> {
        fn before_task(&self, action: &str, payload: &Value, seconds: u64) -> Result<()> {
            self.0.before_task(action, payload, seconds)
        }
        fn instance_side(&self, kind: &str, command_id: &str) -> Result<()> {
            self.0.instance_side(kind, command_id)
        }
        fn container_starts(&self, _command: &[String]) -> Result<()> {
            bail!("CannotPullContainerError: pull image manifest has been retried 5 time(s)")
        }
    }
    let mut emu = Emulator::start("")?;
    deploy_snapshot_task(&mut emu)?;
    let (id, _) = instance_with_planted_volumes(&emu)?;
    sdk(emu
        .rt
        .block_on(emu.ec2.stop_instances().instance_ids(&id).send()))?;
    let world = NoImage(LateAgent {
        emu: &emu,
        online_at: None,
        evidence: None,
    });
    let run = emu.run_workflow_in(
        &investigate("IR-NOIMAGE", std::slice::from_ref(&id)),
        &world,
    )?;
    run.ensure_failed("Airf.Failed")?;
    ensure!(
        !run.snapshot_tasks.is_empty() && run.snapshot_tasks.iter().all(|t| t.exit_code.is_none()),
        "{:?}",
        run.snapshot_tasks
    );
    ensure!(
        !run.actions
            .iter()
            .any(|a| a == "snapshot_results" || a == "verify" || a == "contain"),
        "{:?}",
        run.actions
    );
    let tags = emu.tags(&id)?;
    let reason = tags.get("airf:reason").context("no airf:reason")?;
    ensure!(
        tags.get("SecurityIncidentStatus").map(String::as_str) == Some("Error")
            && reason.contains("did not exit 0"),
        "{tags:?}"
    );
    // A tag value holds 256 characters; the incident topic gets the whole cause, ECS's reason
    // included.
    let messages = emu.messages()?;
    ensure!(
        messages
            .iter()
            .any(|(_, _, body)| body.contains("did not exit 0")
                && body.contains("CannotPullContainerError")),
        "no notification names ECS's reason: {messages:?}"
    );
    Ok(())
}

// ------------------------------------------------------------ Volatility symbol tables

/// An instance online at once whose agent stored `evidence` (planted: this host has no
/// /proc/kcore).
struct PlantedAgent<'a> {
    emu: &'a Emulator,
    evidence: &'a PlantedEvidence,
}

impl World for PlantedAgent<'_> {
    fn before_task(&self, action: &str, payload: &Value, _seconds: u64) -> Result<()> {
        if action == "managed" {
            let id = payload
                .pointer("/subject/instance_id")
                .and_then(Value::as_str)
                .context("managed without an instance")?;
            self.emu.set_ssm_registered(id, true)?;
        }
        Ok(())
    }

    fn instance_side(&self, kind: &str, command_id: &str) -> Result<()> {
        self.evidence.answer(self.emu, kind, command_id)
    }
}

/// Runs an investigation of one instance whose memory capture stored `inputs`: (instance,
/// evidence, run). The workflow must succeed with the instance contained, the Symbols step
/// last.
fn investigate_planted(
    emu: &Emulator,
    case: &str,
    inputs: &SymbolInputs,
) -> Result<(
    String,
    PlantedEvidence,
    airf_e2e::workflow_runner::WorkflowRun,
)> {
    let id = emu.instance(&[("Name", "web-1")])?;
    let evidence = PlantedEvidence::plant(emu, &id, case, inputs)?;
    let world = PlantedAgent {
        emu,
        evidence: &evidence,
    };
    let run = emu.run_workflow_in(&investigate(case, std::slice::from_ref(&id)), &world)?;
    run.ensure_succeeded()?;
    let tail: Vec<&str> = run
        .actions
        .iter()
        .skip_while(|a| *a != "verify")
        .map(String::as_str)
        .collect();
    ensure!(
        tail == ["verify", "contain", "symbols"],
        "{:?}",
        run.actions
    );
    emu.ensure_status(&id, "Contain")?;
    Ok((id, evidence, run))
}

/// The objects in a memory capture's folder, by name.
fn folder_objects(emu: &Emulator, folder: &str) -> Result<Vec<String>> {
    Ok(emu
        .server
        .keys(&format!("{folder}/"))?
        .into_iter()
        .filter_map(|k| k.rsplit('/').next().map(str::to_owned))
        .collect())
}

/// Issue 15: a memory capture with complete inputs has its Volatility symbol table stored in its
/// case folder by the workflow, after containment; the table's manifest names the memory
/// manifest's bytes and exactly the inputs' sizes and hashes the memory manifest lists; the
/// controller wrote both objects new-only with their SHA-256 checksum, as its role and the
/// bucket policy allow (IAM-evaluated); the responders are told where the table is.
#[test]
fn a_memory_capture_gets_its_symbol_table_in_the_case_folder() -> Result<()> {
    let emu = Emulator::start("")?;
    let case = "IR-ISF";
    let (_, evidence, run) = investigate_planted(
        &emu,
        case,
        &SymbolInputs::Complete(airf_isf::testing::toy_kernel()),
    )?;
    let bucket = &emu.config.evidence_bucket;
    let folder = &evidence.memory_folder;
    let table_key = format!("{folder}/memory.isf.json.xz");
    let table_manifest_key = format!("{folder}/memory.isf.manifest.json");
    let result = &run.outcome["output"]["instances"][0];
    ensure!(result["status"] == json!("contained"), "{result}");
    let image = &result["symbols"]["images"][0];
    ensure!(
        image["table"] == json!(format!("s3://{bucket}/{table_key}"))
            && image["kernel_release"] == json!(airf_isf::testing::RELEASE)
            && image["existing"] == json!(false),
        "{result}"
    );
    eprintln!(
        "an investigated instance's entry: {} bytes",
        result.to_string().len()
    );

    let memory_manifest = emu.server.get(&evidence.memory_manifest)?;
    let memory: Value = serde_json::from_slice(&memory_manifest)?;
    let table_manifest: Value = serde_json::from_slice(&emu.server.get(&table_manifest_key)?)?;
    let listed: Vec<Value> = memory["source"]["artifacts"]
        .as_array()
        .context("no artifacts")?
        .iter()
        .map(|a| json!({"name": a["name"], "size": a["size"], "sha256": a["sha256"]}))
        .collect();
    ensure!(
        table_manifest["inputs"] == json!(listed),
        "the table's inputs {} are not the memory manifest's artifacts {listed:?}",
        table_manifest["inputs"]
    );
    ensure!(
        table_manifest["memory_manifest"]
            == json!({"name": "memory.manifest.json", "size": memory_manifest.len(),
                      "sha256": airf_e2e::sha256(&memory_manifest)}),
        "{table_manifest}"
    );
    let table = emu.server.get(&table_key)?;
    ensure!(
        table_manifest["sha256"] == json!(airf_e2e::sha256(&table))
            && table_manifest["size"] == json!(table.len()),
        "{table_manifest}"
    );
    let isf = airf_isf::decompress(&table)?;
    ensure!(
        isf.symbols.contains_key("init_task") && isf.user_types.contains_key("task_struct"),
        "the stored table is not the toy kernel's"
    );

    // How the controller wrote them: its own role, If-None-Match, the body's SHA-256.
    let controller = &emu.deployment.controller_role;
    for (key, body) in [
        (&table_key, table.clone()),
        (&table_manifest_key, emu.server.get(&table_manifest_key)?),
    ] {
        let puts: Vec<Value> = emu
            .calls
            .records()?
            .into_iter()
            .filter(|r| r["operation"] == "PutObject" && r["s3"]["key"] == json!(key))
            .collect();
        let checksum =
            base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&body));
        ensure!(
            puts.len() == 1
                && puts[0]["principal"]["role_arn"]
                    .as_str()
                    .is_some_and(|r| r.ends_with(&format!("/{controller}")))
                && puts[0]["s3"]["headers"]["if-none-match"] == json!("*")
                && puts[0]["s3"]["headers"]["x-amz-checksum-sha256"] == json!(checksum),
            "{key}: {puts:?}"
        );
    }
    let report = emu.check_iam()?;
    eprintln!("IAM: {report}");

    let messages = emu.messages()?;
    ensure!(
        messages
            .iter()
            .any(|(_, subject, body)| subject.contains("symbol table stored")
                && body.contains(&format!("symbol table: s3://{bucket}/{table_key}"))),
        "no notification names the table: {messages:?}"
    );
    // Contained first: the containment notice comes before the table's.
    let order: Vec<&str> = messages
        .iter()
        .filter(|(queue, _, _)| *queue == 0)
        .map(|(_, subject, _)| subject.as_str())
        .collect();
    let contained = order.iter().position(|s| s.contains("instance contained"));
    let table_notice = order.iter().position(|s| s.contains("symbol table stored"));
    ensure!(contained.is_some() && contained < table_notice, "{order:?}");
    Ok(())
}

/// Issue 15: a kernel without BTF leaves its capture with no table, and the case is not the
/// worse for it: the instance is contained, the result and the notification say
/// `no_symbol_table` with the capture's own reason, and nothing is written beside the image.
#[test]
fn a_memory_capture_without_btf_is_contained_with_no_symbol_table_and_why() -> Result<()> {
    let emu = Emulator::start("")?;
    let (_, evidence, run) = investigate_planted(
        &emu,
        "IR-NOBTF",
        &SymbolInputs::WithoutBtf(airf_isf::testing::toy_kernel()),
    )?;
    let result = &run.outcome["output"]["instances"][0];
    ensure!(result["status"] == json!("contained"), "{result}");
    ensure!(
        result["symbols"]["images"][0]["no_symbol_table"] == json!(NO_BTF)
            && result["symbols"]["images"][0]["manifest"]
                == json!(format!(
                    "s3://{}/{}",
                    emu.config.evidence_bucket, evidence.memory_manifest
                ))
            && result["symbols"]["images"][0].get("table").is_none(),
        "{result}"
    );
    let names = folder_objects(&emu, &evidence.memory_folder)?;
    ensure!(
        !names.iter().any(|n| n.starts_with("memory.isf")),
        "{names:?}"
    );
    let messages = emu.messages()?;
    ensure!(
        messages
            .iter()
            .any(|(_, subject, body)| subject.contains("NO symbol table")
                && body.contains(&format!("no symbol table: {NO_BTF}"))),
        "{messages:?}"
    );
    emu.check_iam()?;
    Ok(())
}

/// A Symbols step that fails (here: the kallsyms beside the image rewritten after verify, so
/// its hash no longer matches the manifest) is recorded in the instance's result; the
/// instance stays contained and the execution succeeds.
#[test]
fn a_failed_symbols_step_leaves_the_instance_contained_with_the_error() -> Result<()> {
    struct Tamper<'a>(PlantedAgent<'a>);
    impl World for Tamper<'_> {
        fn before_task(&self, action: &str, payload: &Value, seconds: u64) -> Result<()> {
            if action == "symbols" {
                // The acquisition role may only write new objects: the rewrite is a new
                // version, as someone with more rights would make it.
                let key = format!("{}/memory.kallsyms.txt", self.0.evidence.memory_folder);
                let file = tempfile::NamedTempFile::new()?;
                std::fs::write(file.path(), b"ffffffff81000000 T _text\n")?;
                self.0.emu.server.put(&key, file.path())?;
            }
            self.0.before_task(action, payload, seconds)
        }
        fn instance_side(&self, kind: &str, command_id: &str) -> Result<()> {
            self.0.instance_side(kind, command_id)
        }
    }
    let emu = Emulator::start("")?;
    let case = "IR-ALTERED";
    let id = emu.instance(&[("Name", "web-1")])?;
    let evidence = PlantedEvidence::plant(
        &emu,
        &id,
        case,
        &SymbolInputs::Complete(airf_isf::testing::toy_kernel()),
    )?;
    let world = Tamper(PlantedAgent {
        emu: &emu,
        evidence: &evidence,
    });
    let run = emu.run_workflow_in(&investigate(case, std::slice::from_ref(&id)), &world)?;
    run.ensure_succeeded()?;
    let result = &run.outcome["output"]["instances"][0];
    ensure!(result["status"] == json!("contained"), "{result}");
    ensure!(
        result["symbols"]["Error"] == json!("Airf.Failed")
            && result["symbols"]["Cause"].as_str().is_some_and(
                |c| c.contains("evidence altered") && c.contains("memory.kallsyms.txt")
            ),
        "{result}"
    );
    emu.ensure_status(&id, "Contain")?;
    ensure!(
        !run.actions.iter().any(|a| a == "fail"),
        "{:?}",
        run.actions
    );
    let messages = emu.messages()?;
    ensure!(
        messages.iter().any(
            |(_, subject, body)| subject.contains("symbol table NOT built")
                && body.contains("evidence altered")
        ),
        "{messages:?}"
    );
    Ok(())
}

/// The evaluation of the controller's writes is not vacuous: its role may write a table only
/// under the two names, and only new (If-None-Match), whatever the bucket policy allows others.
#[test]
fn the_controllers_table_writes_are_denied_under_other_names_or_without_if_none_match() -> Result<()>
{
    let emu = Emulator::start("")?;
    let creds = emu.role_credentials(&emu.deployment.controller_role, "airf-controller")?;
    let sdk = emu.rt.block_on(
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(emu.server.endpoint()?)
            .region(aws_config::Region::new(REGION))
            .credentials_provider(creds)
            .load(),
    );
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    let folder = format!(
        "{}/IR-DENY/i-0123456789abcdef0/r",
        emu.config.evidence_prefix
    );
    let put = |key: String, if_none_match: bool| -> Result<()> {
        let mut p = s3
            .put_object()
            .bucket(&emu.config.evidence_bucket)
            .key(key)
            .body(b"x".to_vec().into());
        if if_none_match {
            p = p.if_none_match("*");
        }
        emu.rt.block_on(p.send())?;
        Ok(())
    };
    // Allowed: the check passes.
    put(format!("{folder}/memory.isf.json.xz"), true)?;
    emu.check_iam()?;
    for (key, if_none_match, statement) in [
        (
            format!("{folder}/memory.isf.manifest.json"),
            false,
            "ControllerNeverOverwrites",
        ),
        (
            format!("{folder}/memory.isf.json"),
            true,
            "no statement allows it",
        ),
        (
            format!("{folder}/memory.lime.zst"),
            true,
            "no statement allows it",
        ),
    ] {
        std::fs::write(&emu.calls.path, "")?;
        put(key.clone(), if_none_match)?;
        let Err(e) = emu.check_iam() else {
            bail!("PutObject {key} (If-None-Match {if_none_match}) passed");
        };
        let message = format!("{e:#}");
        ensure!(
            message.contains("s3:PutObject") && message.contains(statement),
            "{key}: {message}"
        );
    }
    // The denials were this test's own doing: its log must not fail tests/run.sh's evaluation
    // of every test's calls.
    std::fs::write(&emu.calls.path, "")?;
    Ok(())
}
