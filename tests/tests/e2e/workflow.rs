//! The workflow's timing and scale, from the definition and through the interpreter:
//! - each polling loop keeps polling, whatever the retry jitter, at least as long as what it
//!   waits for can take: the SSM Agent's registration back-off, each document's ExecutionTimeout;
//! - each instance runs in its own child execution, whose history stays under 25,000 events;
//! - on simulated time (run-local.cjs): an instance online only after 30 minutes is still
//!   acquired, one that never registers ends in Error naming the fast path, and a 100-instance
//!   fleet is claimed at once.

use airf_controller::actions::acquire;
use airf_e2e::asl::{HISTORY_LIMIT, Workflow};
use airf_e2e::emulator::{ACCOUNT, Emulator, REGION, sdk};
use airf_e2e::guest_evidence::GuestEvidence;
use airf_e2e::repo_root;
use airf_e2e::workflow_runner::{TaskCall, World};
use anyhow::{Context, Result, bail, ensure};
use aws_sdk_ec2::types as ec2t;
use serde_json::{Value, json};
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
    ensure!(tasks.len() == 3, "polling tasks: {tasks:?}");
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
        // Giving up is recorded on the instance, with a reason, not a silent end.
        ensure!(
            l.gives_up_to.as_deref() == Some("RecordError"),
            "{task} gives up to {:?}",
            l.gives_up_to
        );
    }
    ensure!(acquisitions == 2, "memory and disk pollers: {tasks:?}");
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
    let sent = calls_of(&run.calls, "acquire");
    ensure!(
        sent.len() == 1 && sent[0].simulated_seconds == online,
        "{:?}",
        run.calls
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
            "verify",
            "contain"
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
    let emu = Emulator::start("")?;
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
