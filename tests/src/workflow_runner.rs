//! Runs the repository's Step Functions workflow definition for real: an ASL interpreter
//! (aws-local-stepfunctions, driven by `tests/workflow/run-local.cjs`) executes it, and every
//! Task state is handed over HTTP on 127.0.0.1 to the controller's handler running against
//! the [`Emulator`]. moto's Step Functions runs no Lambda functions, so this is what exercises
//! the definition's JSONPath, Choice, Retry, Catch and Map with the real handler.

use std::io::{BufRead, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, anyhow};
use serde_json::{Value, json};

use crate::emulator::{Emulator, workflow_definition};
use crate::repo_root;

/// What a workflow run did.
#[derive(Debug)]
pub struct WorkflowRun {
    /// `{"status": "SUCCEEDED", "output": ...}` or
    /// `{"status": "FAILED", "error": ..., "cause": ...}`.
    pub outcome: Value,
    /// The `action` of every Task invocation, in order.
    pub actions: Vec<String>,
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
        let work = tempfile::tempdir()?;
        let definition_path = work.path().join("definition.json");
        let input_path = work.path().join("input.json");
        std::fs::write(&definition_path, workflow_definition()?)?;
        std::fs::write(&input_path, input.to_string())?;
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let done = AtomicBool::new(false);
        let actions = Mutex::new(Vec::new());
        let output = std::thread::scope(|scope| {
            scope.spawn(|| {
                let tasks = TaskServer {
                    emulator: self,
                    actions: &actions,
                    instance_side: &instance_side,
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
        let actions = actions
            .into_inner()
            .map_err(|_| anyhow!("the Task server panicked while recording an action"))?;
        Ok(WorkflowRun { outcome, actions })
    }
}

/// Answers the interpreter's Task invocations, one HTTP request each.
struct TaskServer<'a, F> {
    emulator: &'a Emulator,
    actions: &'a Mutex<Vec<String>>,
    instance_side: &'a F,
}

impl<F: Fn(&str, &str) -> Result<()>> TaskServer<'_, F> {
    /// Serves until `done` is set.
    fn serve(&self, listener: &TcpListener, done: &AtomicBool) {
        for stream in listener.incoming() {
            if done.load(Ordering::SeqCst) {
                break;
            }
            let Ok(mut stream) = stream else { continue };
            let answer = match read_body(&mut stream)
                .and_then(|body| Ok(serde_json::from_slice::<Value>(&body)?))
            {
                Ok(payload) => self.task(&payload),
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

    /// One Task state, answered in the shape run-local.cjs expects: `{"result": ...}`, or
    /// `{"errorType": ..., "errorMessage": ...}` as Lambda reports a function's error.
    fn task(&self, payload: &Value) -> Value {
        let action = payload
            .get("action")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        match self.actions.lock() {
            Ok(mut actions) => actions.push(action.clone()),
            Err(_) => return harness_error("the list of actions is poisoned"),
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
            if let Err(e) = (self.instance_side)(kind, command_id) {
                return json!({"errorType": "Test.InstanceSide", "errorMessage": e.to_string()});
            }
        }
        json!({ "result": result })
    }
}

/// A failure of this harness, reported to the workflow as a Task error.
fn harness_error(message: &str) -> Value {
    json!({"errorType": "Test.Harness", "errorMessage": message})
}

/// Reads one HTTP/1.1 request's body (Content-Length framed).
fn read_body(stream: &mut TcpStream) -> Result<Vec<u8>> {
    let mut reader = std::io::BufReader::new(stream);
    let mut length = 0usize;
    let mut line = String::new();
    reader.read_line(&mut line)?;
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        if line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse()?;
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    Ok(body)
}
