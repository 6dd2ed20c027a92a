//! Runs the repository's Step Functions workflow definition for real: an ASL interpreter
//! (aws-local-stepfunctions, driven by `tests/workflow/run-local.cjs`) executes it, and every
//! Task state is handed over HTTP on 127.0.0.1 to the controller's handler running against
//! the [`Emulator`]. moto's Step Functions runs no Lambda functions, so this is what exercises
//! the definition's JSONPath, Choice, Wait, Retry, Catch and Map with the real handler.
//!
//! Time is simulated: each instance's clock is the sum of the Wait states' `Seconds` it went
//! through (Retry intervals count as 0, FULL jitter at its worst), and each Task call sees it,
//! so a test can make the world change after so many simulated minutes ([`World::before_task`]).
//!
//! The snapshot tasks (`arn:aws:states:::ecs:runTask.sync`) run for real too: the container's
//! command, as the workflow overrides it, is run with the agent under test ([`agent_bin`])
//! against the emulator (its EC2, EBS, STS and S3), and answered as Step Functions' .sync
//! integration answers: the stopped task's description (`TaskArn`, `Containers[].ExitCode`,
//! ...), or `States.TaskFailed` with that description as the cause when the container exited
//! non-zero (as Step Functions reports it: the cause is the task's JSON, StopCode
//! `EssentialContainerExited`). A container that could not start has no `ExitCode`, as ECS
//! reports a `CannotStartContainerError`.

use std::io::{BufRead, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, anyhow};
use serde_json::{Value, json};

use crate::emulator::{ACCOUNT, Emulator, REGION, workflow_definition};
use crate::{agent_bin, repo_root};

/// What a workflow run did.
#[derive(Debug)]
pub struct WorkflowRun {
    /// `{"status": "SUCCEEDED", "output": ...}` or
    /// `{"status": "FAILED", "error": ..., "cause": ...}`.
    pub outcome: Value,
    /// The `action` of every Task invocation, in order.
    pub actions: Vec<String>,
    /// Every Task invocation, in the order the handler answered them.
    pub calls: Vec<TaskCall>,
    /// The snapshot tasks run, in order.
    pub snapshot_tasks: Vec<SnapshotTask>,
}

/// One `ecs:runTask.sync` the harness ran.
#[derive(Debug, Clone)]
pub struct SnapshotTask {
    /// The container's command (the agent's arguments).
    pub command: Vec<String>,
    /// The task's ARN, as the harness named it.
    pub task_arn: String,
    /// The agent's exit code; None when it never ran or was killed.
    pub exit_code: Option<i32>,
    /// What it printed.
    pub stdout: String,
    /// Its log.
    pub stderr: String,
}

/// The ECS container the task definition runs the agent in (template 3).
const SNAPSHOT_CONTAINER: &str = "airf-agent";
/// How long the harness lets one snapshot task run (the workflow allows 24 hours; a test's
/// volumes are small).
const SNAPSHOT_TASK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

impl WorkflowRun {
    /// Fails, showing the outcome, unless the workflow SUCCEEDED.
    pub fn ensure_succeeded(&self) -> Result<()> {
        anyhow::ensure!(
            self.outcome.get("status") == Some(&json!("SUCCEEDED")),
            "{}",
            self.outcome
        );
        Ok(())
    }

    /// Fails, showing the outcome, unless the workflow FAILED with `error` (`Airf.Failed`, ...).
    pub fn ensure_failed(&self, error: &str) -> Result<()> {
        anyhow::ensure!(
            self.outcome.get("status") == Some(&json!("FAILED"))
                && self.outcome.get("error") == Some(&json!(error)),
            "{}",
            self.outcome
        );
        Ok(())
    }

    /// Fails, showing them, unless the Task states invoked were exactly these actions.
    pub fn ensure_actions(&self, actions: &[&str]) -> Result<()> {
        anyhow::ensure!(self.actions == actions, "{:?}", self.actions);
        Ok(())
    }
}

/// The original framework's console input: investigate (acquire, then contain) one instance of
/// the emulator's account and region.
pub fn legacy_input(case_id: &str, instance_id: &str) -> Value {
    json!({
        "CaseId": case_id,
        "InstanceId": instance_id,
        "Account": ACCOUNT,
        "Region": REGION,
        "RetainArtefacts": true
    })
}

/// One Task invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskCall {
    /// The payload's `action`.
    pub action: String,
    /// The payload's `subject.instance_id`, or "" (normalize has none).
    pub instance_id: String,
    /// The instance's simulated clock when the Task ran: seconds of Wait states before it.
    pub simulated_seconds: u64,
    /// `None` when the handler answered, else the error type (`Airf.Pending`, ...).
    pub error: Option<String>,
}

/// The world around the workflow that a test plays.
pub trait World: Sync {
    /// Called before each Task reaches the handler, with its instance's simulated clock; an
    /// error fails that Task (`Test.World`).
    fn before_task(&self, _action: &str, _payload: &Value, _simulated_seconds: u64) -> Result<()> {
        Ok(())
    }
    /// The instance's side of a command, after each `acquire` and before the workflow polls
    /// it; an error fails that Task (`Test.InstanceSide`).
    fn instance_side(&self, kind: &str, command_id: &str) -> Result<()>;
    /// The instance's side of the triage command: by default the agent's real `triage` result
    /// (run once on this machine, [`triage_result`]), as the triage document prints it.
    fn triage_side(&self, emu: &Emulator, command_id: &str) -> Result<()> {
        let result = triage_result().map_err(|e| anyhow::anyhow!("{e}"))?;
        emu.answer_command(command_id, "Success", result, "")
    }
    /// Whether a snapshot task's container starts (its image pulled, its ENI attached); an
    /// error is ECS's reason it did not (`CannotPullContainerError: ...`): the task then stops
    /// with no exit code.
    fn container_starts(&self, _command: &[String]) -> Result<()> {
        Ok(())
    }
}

/// The agent's `triage` of this machine into a scratch folder, as one JSON line: real output of
/// the binary under test, made once per test process (about 0.2 s).
pub fn triage_result() -> Result<&'static str, String> {
    static RESULT: std::sync::OnceLock<Result<String, String>> = std::sync::OnceLock::new();
    RESULT
        .get_or_init(|| {
            let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
            let agent = crate::agent_bin().map_err(|e| e.to_string())?;
            let out = std::process::Command::new(agent)
                .args([
                    "triage",
                    "--case",
                    "IR-TRIAGE",
                    "--no-progress",
                    "--json",
                    "--to",
                ])
                .arg(dir.path())
                .output()
                .map_err(|e| e.to_string())?;
            let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| {
                format!(
                    "airf-agent triage printed no result ({e}): {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })?;
            Ok(v.to_string())
        })
        .as_deref()
        .map_err(Clone::clone)
}

/// A [`World`] that only plays the instance's side of commands.
struct InstanceSide<F>(F);

impl<F: Fn(&str, &str) -> Result<()> + Sync> World for InstanceSide<F> {
    fn instance_side(&self, kind: &str, command_id: &str) -> Result<()> {
        (self.0)(kind, command_id)
    }
}

impl Emulator {
    /// Runs the workflow with `input` to its end, every Task state invoking this emulator's
    /// handler. `instance_side(kind, command_id)` plays the instance after each `acquire`,
    /// before the workflow polls the command; its error fails that Task.
    pub fn run_workflow(
        &self,
        input: &Value,
        instance_side: impl Fn(&str, &str) -> Result<()> + Sync,
    ) -> Result<WorkflowRun> {
        self.run_workflow_in(input, &InstanceSide(instance_side))
    }

    /// Runs the console's contain-only workflow on these instances (of the emulator's account
    /// and region, claim 1) to its end; an acquisition fails it.
    pub fn run_containment(&self, case_id: &str, instance_ids: &[&str]) -> Result<WorkflowRun> {
        let instances: Vec<Value> = instance_ids
            .iter()
            .map(|id| json!({"instance_id": id, "account": ACCOUNT, "region": REGION, "claim": 1}))
            .collect();
        let input = json!({
            "case_id": case_id,
            "intent": "contain",
            "trigger": "console",
            "retain_artefacts": true,
            "instances": instances
        });
        self.run_workflow(&input, |kind, _| {
            anyhow::bail!("containment only, yet {kind} was acquired")
        })
    }

    /// Runs the workflow with `input` to its end in the `world` the test plays.
    pub fn run_workflow_in(&self, input: &Value, world: &impl World) -> Result<WorkflowRun> {
        let work = tempfile::tempdir()?;
        let definition_path = work.path().join("definition.json");
        let input_path = work.path().join("input.json");
        std::fs::write(&definition_path, workflow_definition()?)?;
        std::fs::write(&input_path, input.to_string())?;
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let done = AtomicBool::new(false);
        let calls = Mutex::new(Vec::new());
        let snapshot_tasks = Mutex::new(Vec::new());
        let output = std::thread::scope(|scope| {
            scope.spawn(|| {
                let tasks = TaskServer {
                    emulator: self,
                    calls: &calls,
                    snapshot_tasks: &snapshot_tasks,
                    world,
                };
                tasks.serve(&listener, &done);
            });
            let out = Command::new("node")
                .arg(repo_root().join("tests/workflow/run-local.cjs"))
                .arg(&definition_path)
                .arg(&input_path)
                .arg(port.to_string())
                .output();
            done.store(true, Ordering::SeqCst);
            // The server blocks in accept: one more connection lets it see `done` and return.
            let _ = TcpStream::connect(("127.0.0.1", port));
            out
        })
        .context("running node (tests/scripts/install-deps.sh installs it)")?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout.lines().last().unwrap_or("");
        let outcome: Value = serde_json::from_str(line).with_context(|| {
            format!(
                "tests/workflow/run-local.cjs printed no result \
                 (run tests/scripts/install-deps.sh):\n{stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        })?;
        let calls = calls
            .into_inner()
            .map_err(|_| anyhow!("the Task server panicked while recording a call"))?;
        let actions = calls.iter().map(|c| c.action.clone()).collect();
        let snapshot_tasks = snapshot_tasks
            .into_inner()
            .map_err(|_| anyhow!("the Task server panicked while recording a snapshot task"))?;
        Ok(WorkflowRun {
            outcome,
            actions,
            calls,
            snapshot_tasks,
        })
    }
}

/// Answers the interpreter's Task invocations, one HTTP request each, one at a time: the order
/// of [`WorkflowRun::calls`] is the order the handler ran them.
struct TaskServer<'a, W> {
    emulator: &'a Emulator,
    calls: &'a Mutex<Vec<TaskCall>>,
    snapshot_tasks: &'a Mutex<Vec<SnapshotTask>>,
    world: &'a W,
}

impl<W: World> TaskServer<'_, W> {
    /// Serves until `done` is set.
    fn serve(&self, listener: &TcpListener, done: &AtomicBool) {
        for stream in listener.incoming() {
            if done.load(Ordering::SeqCst) {
                break;
            }
            let Ok(mut stream) = stream else { continue };
            let answer = match read_request(&mut stream)
                .and_then(|(clock, body)| Ok((clock, serde_json::from_slice::<Value>(&body)?)))
            {
                Ok((clock, payload)) => self.task(&payload, clock),
                Err(e) => harness_error(&e.to_string()),
            };
            let body = answer.to_string();
            // A write fails only when the interpreter is gone, and then its own output says why.
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    }

    /// One Task state, answered in the shape run-local.cjs expects, and recorded.
    fn task(&self, payload: &Value, simulated_seconds: u64) -> Value {
        let ecs = payload.get("resource").and_then(Value::as_str) == Some(ECS_RUN_TASK_SYNC);
        let (answer, action, instance_id) = if ecs {
            let parameters = payload.get("parameters").unwrap_or(&Value::Null);
            let (answer, instance) = self.run_task(parameters);
            (answer, ECS_ACTION.to_owned(), instance)
        } else {
            (
                self.answer(payload, simulated_seconds),
                text(payload, "/action"),
                text(payload, "/subject/instance_id"),
            )
        };
        let call = TaskCall {
            action,
            instance_id,
            simulated_seconds,
            error: answer
                .get("errorType")
                .and_then(Value::as_str)
                .map(str::to_owned),
        };
        match self.calls.lock() {
            Ok(mut calls) => calls.push(call),
            Err(_) => return harness_error("the list of calls is poisoned"),
        }
        answer
    }

    /// `{"result": ...}`, or `{"errorType": ..., "errorMessage": ...}` as Lambda reports a
    /// function's error.
    fn answer(&self, payload: &Value, simulated_seconds: u64) -> Value {
        let action = text(payload, "/action");
        if let Err(e) = self.world.before_task(&action, payload, simulated_seconds) {
            return json!({"errorType": "Test.World", "errorMessage": e.to_string()});
        }
        let result = match self.emulator.invoke(payload.clone()) {
            Ok(result) => result,
            Err(e) => {
                return json!({"errorType": e.kind().error_type(), "errorMessage": e.to_string()});
            }
        };
        if action == "acquire" {
            let kind = payload.get("kind").and_then(Value::as_str);
            let command_id = result.get("command_id").and_then(Value::as_str);
            let (Some(kind), Some(command_id)) = (kind, command_id) else {
                return harness_error(&format!(
                    "acquire without a kind or a command id: {payload} answered {result}"
                ));
            };
            let side = if kind == "triage" {
                self.world.triage_side(self.emulator, command_id)
            } else {
                self.world.instance_side(kind, command_id)
            };
            if let Err(e) = side {
                return json!({"errorType": "Test.InstanceSide", "errorMessage": e.to_string()});
            }
        }
        json!({ "result": result })
    }
}

/// The resource of the snapshot tasks' Task state.
const ECS_RUN_TASK_SYNC: &str = "arn:aws:states:::ecs:runTask.sync";
/// How [`TaskCall::action`] names a snapshot task.
pub const ECS_ACTION: &str = "ecs:runTask";

/// What a RunTask request must hold for the snapshot task, as ECS would refuse it otherwise
/// (`InvalidParameterException`): the agent's command, and the instance it names.
fn run_task_request(p: &Value) -> Result<(Vec<String>, String), String> {
    let need = |pointer: &str| -> Result<&Value, String> {
        p.pointer(pointer)
            .filter(|v| !v.is_null())
            .ok_or_else(|| format!("RunTask without {pointer}: {p}"))
    };
    if need("/LaunchType")?.as_str() != Some("FARGATE") {
        return Err(format!("RunTask LaunchType is not FARGATE: {p}"));
    }
    for key in ["/Cluster", "/TaskDefinition"] {
        if !need(key)?
            .as_str()
            .is_some_and(|s| s.starts_with("arn:aws:ecs:"))
        {
            return Err(format!("RunTask {key} is not an ECS ARN: {p}"));
        }
    }
    for key in [
        "/NetworkConfiguration/AwsvpcConfiguration/Subnets",
        "/NetworkConfiguration/AwsvpcConfiguration/SecurityGroups",
    ] {
        if need(key)?.as_array().is_none_or(Vec::is_empty) {
            return Err(format!("RunTask {key} is empty: Fargate needs awsvpc: {p}"));
        }
    }
    let overrides = need("/Overrides/ContainerOverrides")?
        .as_array()
        .cloned()
        .unwrap_or_default();
    let [container] = overrides.as_slice() else {
        return Err(format!(
            "RunTask overrides {} containers, not one: {p}",
            overrides.len()
        ));
    };
    if container.get("Name").and_then(Value::as_str) != Some(SNAPSHOT_CONTAINER) {
        return Err(format!(
            "RunTask overrides a container other than {SNAPSHOT_CONTAINER}: {p}"
        ));
    }
    let command: Vec<String> = container
        .get("Command")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("RunTask overrides no command: {p}"))?
        .iter()
        .map(|a| a.as_str().map(str::to_owned))
        .collect::<Option<_>>()
        .ok_or_else(|| format!("a command argument that is not a string: {p}"))?;
    let instance = command
        .iter()
        .position(|a| a == "--instance")
        .and_then(|i| command.get(i + 1))
        .cloned()
        .unwrap_or_default();
    Ok((command, instance))
}

impl<W: World> TaskServer<'_, W> {
    /// Runs one snapshot task: the agent with the task's command, against the emulator; answers
    /// as the .sync integration does. Returns the answer and the instance the command names.
    fn run_task(&self, parameters: &Value) -> (Value, String) {
        let (command, instance) = match run_task_request(parameters) {
            Ok(request) => request,
            Err(why) => {
                return (
                    json!({"errorType": "ECS.InvalidParameterException", "errorMessage": why}),
                    String::new(),
                );
            }
        };
        let number = self.snapshot_tasks.lock().map(|t| t.len()).unwrap_or(0);
        let cluster = text(parameters, "/Cluster");
        let cluster_name = cluster.rsplit('/').next().unwrap_or("airf").to_owned();
        let task_arn = format!(
            "arn:aws:ecs:{REGION}:{ACCOUNT}:task/{cluster_name}/{:032x}",
            number + 1
        );
        let started = self.world.container_starts(&command).and_then(|()| {
            let task_id = task_arn.rsplit('/').next().unwrap_or_default();
            self.run_agent(&command, task_id)
                .context("CannotStartContainerError")
        });
        let (exit_code, stdout, stderr, reason) = match started {
            Ok((code, out, err)) => (code, out, err, None),
            Err(e) => (None, String::new(), String::new(), Some(format!("{e:#}"))),
        };
        let mut container = serde_json::Map::new();
        container.insert("Name".into(), json!(SNAPSHOT_CONTAINER));
        container.insert("LastStatus".into(), json!("STOPPED"));
        container.insert("TaskArn".into(), json!(task_arn));
        if let Some(code) = exit_code {
            container.insert("ExitCode".into(), json!(code));
        }
        if let Some(reason) = &reason {
            container.insert("Reason".into(), json!(reason));
        }
        let task = json!({
            "TaskArn": task_arn,
            "ClusterArn": cluster,
            "TaskDefinitionArn": text(parameters, "/TaskDefinition"),
            "LaunchType": "FARGATE",
            "LastStatus": "STOPPED",
            "DesiredStatus": "STOPPED",
            "StartedBy": "AWS Step Functions",
            "StopCode": if reason.is_some() { "TaskFailedToStart" } else { "EssentialContainerExited" },
            "StoppedReason": "Essential container in task exited",
            "Overrides": parameters.get("Overrides").cloned().unwrap_or(Value::Null),
            "Containers": [container],
        });
        if let Ok(mut tasks) = self.snapshot_tasks.lock() {
            tasks.push(SnapshotTask {
                command,
                task_arn,
                exit_code,
                stdout,
                stderr,
            });
        }
        let answer = match exit_code {
            Some(code) if code != 0 => {
                json!({"errorType": "States.TaskFailed", "errorMessage": task.to_string()})
            }
            _ => json!({ "result": task }),
        };
        (answer, instance)
    }

    /// Runs the agent with `args` as the task would: with a session of the snapshot task's role
    /// (template 3; ECS names it after the task), so that moto records its calls for the IAM
    /// evaluation, and the emulator's endpoints (EC2, EBS, STS and S3 in one server).
    /// (exit code, stdout, stderr).
    fn run_agent(&self, args: &[String], task_id: &str) -> Result<(Option<i32>, String, String)> {
        let emu = self.emulator;
        let endpoint = emu.server.endpoint()?;
        let role = format!(
            "arn:aws:iam::{ACCOUNT}:role/{}",
            emu.deployment.snapshot_task_role
        );
        let sdk = emu.rt.block_on(
            aws_config::defaults(aws_config::BehaviorVersion::latest())
                .endpoint_url(&endpoint)
                .region(aws_config::Region::new(REGION))
                .credentials_provider(aws_credential_types::Credentials::new(
                    "testing", "testing", None, None, "test",
                ))
                .load(),
        );
        let session = emu
            .rt
            .block_on(crate::iam_calls::assume_role(&sdk, &role, task_id))?;
        let mut child = emu
            .server
            .command(agent_bin()?)
            .args(args)
            .env("AWS_ACCESS_KEY_ID", session.access_key_id())
            .env("AWS_SECRET_ACCESS_KEY", session.secret_access_key())
            .env(
                "AWS_SESSION_TOKEN",
                session.session_token().unwrap_or_default(),
            )
            .env("AWS_ENDPOINT_URL_EC2", &endpoint)
            .env("AWS_ENDPOINT_URL_EBS", &endpoint)
            .env("AWS_ENDPOINT_URL_STS", &endpoint)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("starting airf-agent")?;
        // Read both pipes while it runs: a full pipe would stop the agent.
        let drain = |pipe: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut text = Vec::new();
                if let Some(mut pipe) = pipe {
                    let _ = pipe.read_to_end(&mut text);
                }
                String::from_utf8_lossy(&text).into_owned()
            })
        };
        let stdout = drain(
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        );
        let stderr = drain(
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        );
        let deadline = std::time::Instant::now() + SNAPSHOT_TASK_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break Some(status);
            }
            if std::time::Instant::now() > deadline {
                // A task Step Functions would time out: stopped, no exit code.
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        let joined = |h: std::thread::JoinHandle<String>| {
            h.join().map_err(|_| anyhow!("a pipe reader panicked"))
        };
        Ok((
            status.and_then(|s| s.code()),
            joined(stdout)?,
            joined(stderr)?,
        ))
    }
}

/// The string at `pointer` in `payload`, or "".
fn text(payload: &Value, pointer: &str) -> String {
    payload
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned()
}

/// A failure of this harness, reported to the workflow as a Task error.
fn harness_error(message: &str) -> Value {
    json!({"errorType": "Test.Harness", "errorMessage": message})
}

/// Reads one HTTP/1.1 request (Content-Length framed): the instance's simulated clock that
/// run-local.cjs sends in X-Airf-Simulated-Seconds, and the body.
fn read_request(stream: &mut TcpStream) -> Result<(u64, Vec<u8>)> {
    let mut reader = std::io::BufReader::new(stream);
    let mut length = 0usize;
    let mut clock = None;
    let mut line = String::new();
    reader.read_line(&mut line)?;
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        if line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse()?;
            } else if k.eq_ignore_ascii_case("x-airf-simulated-seconds") {
                clock = Some(v.trim().parse()?);
            }
        }
    }
    let clock = clock.context("run-local.cjs sent no X-Airf-Simulated-Seconds")?;
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    Ok((clock, body))
}
