//! The workflow definition and the handler agree: every Task state sends an action the handler
//! parses, every Airf.* error the workflow retries or catches is one the handler returns, and
//! every step of an instance ends in RecordError when it fails.

// clippy.toml's allow-*-in-tests covers #[test] functions only; the helpers here are test code too.
#![allow(
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test helpers: a panic is a failed test"
)]

use airf_controller::error::Kind;
use airf_controller::event::{Request, parse};
use serde_json::{Value, json};

fn definition() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/workflow/airf-investigation.asl.json"
    );
    let text = std::fs::read_to_string(path).expect(path);
    serde_json::from_str(&text).expect(path)
}

/// Replaces each `"key.$": "<path>"` with a plausible value, as Step Functions would.
fn instantiate(parameters: &Value) -> Value {
    let subject = json!({"instance_id": "i-0123456789abcdef0", "account": "111111111111", "region": "eu-west-1", "claim": 1});
    let command = json!({"command_id": "c", "document": "airf-acquire-memory", "plugin": "AcquireMemory", "kind": "memory"});
    let mut out = serde_json::Map::new();
    for (k, v) in parameters.as_object().into_iter().flatten() {
        let Some(name) = k.strip_suffix(".$") else {
            out.insert(k.clone(), v.clone());
            continue;
        };
        let value = match name {
            "case_id" => json!("IR-1"),
            "subject" => subject.clone(),
            "intent" => json!("investigate"),
            "command" => command.clone(),
            "results" => json!([]),
            "memory" => json!({"kind": "memory", "not_acquired": "the instance is stopped"}),
            "plan" => json!({"tasks": []}),
            "tasks" => json!([]),
            "artifacts" => json!([]),
            "error" => json!({"Error": "Airf.Failed", "Cause": "x"}),
            "input" => json!({"CaseId": "IR-1"}),
            // $$.Execution.Id of a Distributed Map's child execution.
            "execution_arn" => json!(
                "arn:aws:states:eu-west-1:222222222222:execution:airf-investigation/Instance:5a1c"
            ),
            other => json!(format!("<{other}>")),
        };
        out.insert(name.to_owned(), value);
    }
    Value::Object(out)
}

fn task_states(states: &Value, found: &mut Vec<(String, Value)>) {
    for (name, state) in states.as_object().into_iter().flatten() {
        if state["Type"] == "Task" {
            found.push((name.clone(), state.clone()));
        }
        if state["Type"] == "Map" {
            task_states(&state["ItemProcessor"]["States"], found);
        }
    }
}

/// The snapshot tasks' resource: a Step Functions service integration, not the controller.
const ECS_RUN_TASK_SYNC: &str = "arn:aws:states:::ecs:runTask.sync";

/// The controller's Task states (the snapshot tasks run on ECS).
fn lambda_tasks(asl: &Value) -> Vec<(String, Value)> {
    let mut tasks = Vec::new();
    task_states(&asl["States"], &mut tasks);
    tasks.retain(|(_, s)| s["Resource"] != ECS_RUN_TASK_SYNC);
    tasks
}

#[test]
fn every_task_sends_an_action_the_handler_parses() {
    let asl = definition();
    let tasks = lambda_tasks(&asl);
    assert!(tasks.len() >= 10, "{} task states", tasks.len());
    for (name, state) in &tasks {
        assert_eq!(state["Resource"], "${ControllerFunctionArn}", "{name}");
        let payload = instantiate(&state["Parameters"]);
        match parse(payload.clone()) {
            Ok(Request::Task(_)) => {}
            other => panic!("state {name}: {payload} → {other:?}"),
        }
    }
}

#[test]
fn retried_and_caught_errors_are_ones_the_handler_returns() {
    let asl = definition();
    let known: Vec<&str> = [Kind::BadInput, Kind::Pending, Kind::Transient, Kind::Failed]
        .iter()
        .map(|k| k.error_type())
        .collect();
    for (name, state) in &lambda_tasks(&asl) {
        let retries = state["Retry"]
            .as_array()
            .unwrap_or_else(|| panic!("state {name} has no Retry"));
        for names in retries
            .iter()
            .chain(state["Catch"].as_array().into_iter().flatten())
        {
            for e in names["ErrorEquals"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                assert!(
                    !e.starts_with("Airf.") || known.contains(&e),
                    "state {name} matches {e}, which the handler never returns"
                );
            }
        }
        let retried: Vec<&str> = retries
            .iter()
            .flat_map(|r| r["ErrorEquals"].as_array().into_iter().flatten())
            .filter_map(Value::as_str)
            .collect();
        assert!(
            retried.contains(&"Airf.Transient"),
            "state {name} does not retry throttling"
        );
        assert!(
            !retried.contains(&"Airf.Failed") && !retried.contains(&"Airf.BadInput"),
            "state {name} retries a final error"
        );
        // The last catcher takes everything; before it, only a poller's Airf.Pending (its
        // time-based loop).
        let catchers = state["Catch"].as_array().cloned().unwrap_or_default();
        let (catch, pollers) = catchers
            .split_last()
            .unwrap_or_else(|| panic!("state {name} has no Catch"));
        let expected = match name.as_str() {
            "Normalize" => "RejectedInput",
            "RecordError" => "Errored",
            // The instance is contained by then: a table that cannot be made is recorded, not
            // the instance's failure.
            "Symbols" => "Contained",
            // Evidence of what AWS said, before any change: its failure is recorded in the
            // instance's result and acquisition goes on.
            "ControlPlane" => "AfterControlPlane",
            // Triage's failure is recorded and memory is acquired all the same.
            "AcquireTriage" | "TriageDone" => "AcquireMemory",
            _ => "RecordError",
        };
        assert_eq!(
            catch["ErrorEquals"],
            json!(["States.ALL"]),
            "state {name} lets an error escape"
        );
        assert_eq!(catch["Next"], expected, "state {name}");
        for p in pollers {
            assert_eq!(p["ErrorEquals"], json!(["Airf.Pending"]), "state {name}");
        }
    }
}

/// The snapshot tasks: run on Fargate with the command the controller planned, retried on ECS's
/// transient errors only, every failure (a non-zero exit, a container that never ran) turned
/// into the instance's failure, and the Map that runs them caught into RecordError.
#[test]
fn snapshot_tasks_check_their_exit_code_and_fail_into_record_error() {
    let asl = definition();
    let states = &asl["States"]["Instances"]["ItemProcessor"]["States"];
    let map = &states["ReadSnapshots"];
    assert_eq!(map["Type"], "Map");
    assert_eq!(map["ItemsPath"], "$.snapshot_plan.tasks");
    assert_eq!(map["Catch"][0]["ErrorEquals"], json!(["States.ALL"]));
    assert_eq!(map["Catch"][0]["Next"], "RecordError");
    assert_eq!(map["Next"], "SnapshotResults");
    let inner = &map["ItemProcessor"]["States"];
    let task = &inner[map["ItemProcessor"]["StartAt"].as_str().expect("StartAt")];
    assert_eq!(task["Resource"], ECS_RUN_TASK_SYNC);
    let p = &task["Parameters"];
    assert_eq!(p["LaunchType"], "FARGATE");
    assert_eq!(
        p["Overrides"]["ContainerOverrides"][0]["Command.$"],
        "$.command"
    );
    assert_eq!(
        p["NetworkConfiguration"]["AwsvpcConfiguration"]["AssignPublicIp"],
        "DISABLED"
    );
    let retried: Vec<&str> = task["Retry"]
        .as_array()
        .expect("Retry")
        .iter()
        .flat_map(|r| r["ErrorEquals"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .collect();
    for e in ["ECS.AmazonECSException", "ECS.ServerException"] {
        assert!(retried.contains(&e), "{retried:?}");
    }
    assert!(
        !retried.contains(&"States.TaskFailed") && !retried.contains(&"States.ALL"),
        "an agent that failed is not run again blindly: {retried:?}"
    );
    // Every way out of the task but exit code 0 ends in the Fail state, whose error the Map's
    // catcher records.
    let caught = &task["Catch"][0];
    assert_eq!(caught["ErrorEquals"], json!(["States.ALL"]));
    let check = &inner[task["Next"].as_str().expect("Next")];
    assert_eq!(check["Type"], "Choice");
    let rule = check["Choices"][0].to_string();
    assert!(
        rule.contains("ExitCode")
            && rule.contains("IsPresent")
            && rule.contains("\"NumericEquals\":0"),
        "{rule}"
    );
    for failed in [
        &inner[caught["Next"].as_str().expect("Next")],
        &inner[check["Default"].as_str().expect("Default")],
    ] {
        assert_eq!(failed["Type"], "Pass");
        assert_eq!(
            inner[failed["Next"].as_str().expect("Next")]["Type"],
            "Fail"
        );
    }
}

#[test]
fn fleets_run_as_child_executions_with_bounded_concurrency() {
    let asl = definition();
    let map = &asl["States"]["Instances"];
    assert_eq!(map["Type"], "Map");
    // One child execution per instance, all at once (tests/tests/e2e/workflow.rs checks the
    // rest), yet a stated bound: Distributed Map's own is 10,000.
    assert_eq!(
        map["ItemProcessor"]["ProcessorConfig"]["Mode"],
        "DISTRIBUTED"
    );
    let n = map["MaxConcurrency"].as_u64().expect("MaxConcurrency");
    assert!((100..=10_000).contains(&n), "MaxConcurrency {n}");
}

/// The symbol tables are built after containment, never before it (containment never waits
/// for seconds of CPU an analyst needs later), and only after an investigation (verify ran);
/// their failure is recorded in the instance's result, which still says contained.
#[test]
fn symbol_tables_come_after_containment_and_never_fail_the_instance() {
    let asl = definition();
    let states = &asl["States"]["Instances"]["ItemProcessor"]["States"];
    assert_eq!(states["Contain"]["Next"], "SymbolTables?");
    let choice = &states["SymbolTables?"];
    assert_eq!(choice["Type"], "Choice");
    assert_eq!(choice["Choices"][0]["Variable"], "$.verify.artifacts");
    assert_eq!(choice["Choices"][0]["IsPresent"], true);
    assert_eq!(choice["Choices"][0]["Next"], "Symbols");
    assert_eq!(choice["Default"], "Contained");
    let symbols = &states["Symbols"];
    assert_eq!(symbols["Parameters"]["action"], "symbols");
    assert_eq!(symbols["Parameters"]["artifacts.$"], "$.verify.artifacts");
    assert_eq!(symbols["Next"], "Contained");
    assert_eq!(symbols["ResultPath"], "$.symbols");
    let catch = &symbols["Catch"][0];
    assert_eq!(catch["ResultPath"], "$.symbols", "the error is the result");
    assert_eq!(catch["Next"], "Contained");
    let contained = &states["Contained"];
    assert_eq!(contained["Parameters"]["status"], "contained");
    assert_eq!(contained["Parameters"]["symbols.$"], "$.symbols");
    // Containment alone never runs Symbols, yet Contained reads $.symbols: the Map's item
    // starts with an empty one.
    let item = &asl["States"]["Instances"]["ItemSelector"];
    assert_eq!(item["symbols"], json!({"images": []}));
    assert!(item["verify"].get("artifacts").is_none());
    // No state before Contain leads to Symbols.
    for (name, state) in states.as_object().into_iter().flatten() {
        if name != "SymbolTables?" {
            assert!(
                !state.to_string().contains("\"Next\":\"Symbols\""),
                "{name} leads to Symbols"
            );
        }
    }
}

/// The control-plane evidence is taken once the instance is claimed and before anything else
/// touches it (isolation_plan's tags, prepare's instance profile, contain), for an investigation
/// and for containment alone; its failure is recorded in the instance's result and the case goes
/// on.
#[test]
fn control_plane_evidence_comes_before_any_change_and_never_stops_the_case() {
    let asl = definition();
    let states = &asl["States"]["Instances"]["ItemProcessor"]["States"];
    let claimed = &states["Claimed?"];
    assert_eq!(claimed["Default"], "ControlPlane");
    assert_eq!(
        claimed["Choices"],
        json!([{"Variable": "$.claim.claimed", "BooleanEquals": false, "Next": "Skipped"}]),
        "every claimed instance goes through ControlPlane"
    );
    let cp = &states["ControlPlane"];
    assert_eq!(cp["Parameters"]["action"], "control_plane");
    assert_eq!(cp["Parameters"]["execution_arn.$"], "$$.Execution.Id");
    assert_eq!(cp["ResultPath"], "$.control_plane");
    assert_eq!(cp["Next"], "AfterControlPlane");
    assert_eq!(cp["Catch"][0]["ResultPath"], "$.control_plane");
    assert_eq!(cp["Catch"][0]["Next"], "AfterControlPlane");
    let after = &states["AfterControlPlane"];
    assert_eq!(
        after["Choices"],
        json!([{"Variable": "$.intent", "StringEquals": "contain", "Next": "Contain"}])
    );
    assert_eq!(after["Default"], "IsolationPlan");
    // Only these two lead anywhere that changes the instance after the claim.
    for (name, state) in states.as_object().into_iter().flatten() {
        for changes in ["IsolationPlan", "Prepare", "Contain", "Isolate"] {
            if state
                .to_string()
                .contains(&format!("\"Next\":\"{changes}\""))
                && ![
                    "AfterControlPlane",
                    "ContainFirst?",
                    "Isolate",
                    "Countersigned",
                ]
                .contains(&name.as_str())
            {
                panic!("{name} leads to {changes} without the control-plane evidence");
            }
        }
    }
    assert_eq!(
        states["Contained"]["Parameters"]["control_plane.$"],
        "$.control_plane"
    );
    assert_eq!(
        asl["States"]["Instances"]["ItemSelector"]["control_plane"],
        json!({})
    );
}

/// Triage runs once the instance is managed and before memory; whatever happens to it (an
/// error, a poll timeout) leads to memory; its polling lasts the triage document's
/// ExecutionTimeout (600 s, controller/src/actions/acquire.rs) plus the 10 minutes of delivery
/// margin every poller allows (tests/tests/e2e/workflow.rs).
#[test]
fn triage_comes_before_memory_and_never_stops_it() {
    let asl = definition();
    let states = &asl["States"]["Instances"]["ItemProcessor"]["States"];
    assert_eq!(states["WaitUntilManaged"]["Next"], "AcquireTriage");
    let acquire = &states["AcquireTriage"];
    assert_eq!(acquire["Parameters"]["kind"], "triage");
    assert_eq!(acquire["Next"], "TriageDone");
    assert_eq!(states["TriageDone"]["Next"], "AcquireMemory");
    assert_eq!(states["TriageTimedOut"]["Next"], "AcquireMemory");
    for name in ["AcquireTriage", "TriageDone", "TriageTimedOut"] {
        assert!(
            !states[name].to_string().contains("RecordError"),
            "{name} can end the case"
        );
    }
    let polls = states["TriagePollsLeft?"]["Choices"][0]["NumericGreaterThanEquals"]
        .as_u64()
        .unwrap();
    let wait = states["WaitForTriage"]["Seconds"].as_u64().unwrap();
    assert_eq!(polls * wait, 600 + 600);
    assert_eq!(
        asl["States"]["Instances"]["ItemSelector"]["polls"]["triage"],
        0
    );
    // Only where the triage is and how it ended stays in the execution's state.
    assert_eq!(
        states["TriageDone"]["ResultSelector"],
        json!({"command_id.$": "$.command_id", "status.$": "$.report.status",
               "evidence_folder.$": "$.report.evidence_folder"})
    );
}
