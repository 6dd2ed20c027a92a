//! The Lambda's one entry point: parse, check the account, run the action, answer JSON.

use crate::actions::{acquire, claim, contain, fail, prepare, start, verify};
use crate::cloud::Cloud;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::event::{self, Request, Task};
use serde::Serialize;
use serde_json::{Value, json};

fn to_value(v: impl Serialize) -> Result<Value> {
    serde_json::to_value(v).map_err(|e| Error::failed(format!("serializing the result: {e}")))
}

/// Handles one invocation. `now` is the current UTC time in RFC 3339 (passed in for tests).
pub async fn handle<C: Cloud>(
    cloud: &C,
    config: &Config,
    payload: Value,
    now: &str,
) -> Result<Value> {
    let request = event::parse(payload).map_err(|r| Error::BadInput(r.0))?;
    match request {
        Request::Ignored(why) => Ok(json!({ "ignored": why })),
        Request::Trigger(trigger) => {
            for t in &trigger.targets {
                config.check_account(&t.account)?;
            }
            to_value(start::start(cloud, config, &trigger).await?)
        }
        Request::Task(task) => {
            if let Some((_, subject)) = task.subject() {
                config.check_account(&subject.target.account)?;
            }
            run_task(cloud, config, task, now).await
        }
    }
}

async fn run_task<C: Cloud>(cloud: &C, config: &Config, task: Task, now: &str) -> Result<Value> {
    match task {
        Task::Normalize { input } => {
            let normalized = claim::normalize(cloud, input).await?;
            for s in &normalized.instances {
                config.check_account(&s.target.account)?;
            }
            to_value(normalized)
        }
        Task::Claim {
            case_id, subject, ..
        } => to_value(claim::claim(cloud, &case_id, &subject).await?),
        Task::Prepare { case_id, subject } => {
            to_value(prepare::prepare(cloud, config, &case_id, &subject).await?)
        }
        Task::Managed { subject, .. } => {
            to_value(json!({ "managed": prepare::managed(cloud, &subject).await? }))
        }
        Task::Acquire {
            case_id,
            subject,
            kind,
        } => to_value(acquire::acquire(cloud, config, &case_id, &subject, kind).await?),
        Task::AcquireStatus {
            subject, command, ..
        } => to_value(acquire::status(cloud, &subject, &command).await?),
        Task::Verify {
            case_id,
            subject,
            results,
        } => to_value(verify::verify(cloud, config, &case_id, &subject, &results).await?),
        Task::Contain { case_id, subject } => {
            to_value(contain::contain(cloud, config, &case_id, &subject, now).await?)
        }
        Task::Fail {
            case_id,
            subject,
            error,
        } => to_value(fail::fail(cloud, config, &case_id, &subject, &error).await?),
    }
}
