//! The Lambda's one entry point: parse, check the account, run the action, answer JSON.

use crate::actions::{
    acquire, claim, contain, control_plane, fail, isolate, prepare, release, snapshots, start,
    symbols, verify,
};
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
        Task::Normalize { input } => to_value(claim::normalize(cloud, config, input).await?),
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
            case_id,
            subject,
            command,
        } => to_value(acquire::status(cloud, config, &case_id, &subject, &command).await?),
        Task::SnapshotPlan {
            case_id,
            subject,
            memory,
        } => to_value(snapshots::snapshot_plan(cloud, config, &case_id, &subject, &memory).await?),
        Task::SnapshotResults {
            case_id,
            subject,
            plan,
            tasks,
        } => to_value(
            snapshots::snapshot_results(cloud, config, &case_id, &subject, &plan, &tasks).await?,
        ),
        Task::Verify {
            case_id,
            subject,
            results,
            execution_arn,
        } => to_value(
            verify::verify(
                cloud,
                config,
                &case_id,
                &subject,
                &results,
                &execution_arn,
                now,
            )
            .await?,
        ),
        Task::Symbols {
            case_id,
            subject,
            artifacts,
            execution_arn,
        } => to_value(
            symbols::symbols(
                cloud,
                config,
                &case_id,
                &subject,
                &artifacts,
                &execution_arn,
            )
            .await?,
        ),
        Task::ControlPlane {
            case_id,
            subject,
            execution_arn,
        } => to_value(
            control_plane::control_plane(
                cloud,
                config,
                &case_id,
                &subject,
                &execution_arn,
                now,
                std::time::Duration::from_millis(config.lookup_events_interval_ms),
            )
            .await?,
        ),
        Task::Contain { case_id, subject } => {
            to_value(contain::contain(cloud, config, &case_id, &subject, now).await?)
        }
        Task::Fail {
            case_id,
            subject,
            error,
        } => to_value(fail::fail(cloud, config, &case_id, &subject, &error).await?),
        Task::IsolationPlan { case_id, subject } => {
            to_value(isolate::isolation_plan(cloud, config, &case_id, &subject).await?)
        }
        Task::Isolate { case_id, subject } => {
            to_value(isolate::isolate(cloud, config, &case_id, &subject).await?)
        }
        Task::Release { case_id, subject } => {
            to_value(release::release(cloud, config, &case_id, &subject).await?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_config;
    use crate::fake::{FakeCloud, facts};
    use proptest::prelude::*;

    const MEMBER: &str = "111111111111";
    const INSTANCE: &str = "i-0123456789abcdef0";

    /// Inputs that name `account` and are valid in every other way: a tag change, a Security Hub
    /// action, a workflow task and the workflow's input.
    fn inputs(account: &str) -> Vec<Value> {
        let arn = format!("arn:aws:ec2:eu-west-1:{account}:instance/{INSTANCE}");
        let subject =
            json!({"instance_id": INSTANCE, "account": account, "region": "eu-west-1", "claim": 1});
        vec![
            json!({
                "version": "0", "id": "1", "detail-type": "Tag Change on Resource", "source": "aws.tag",
                "account": account, "time": "2026-11-29T17:21:34Z", "region": "eu-west-1",
                "resources": [arn],
                "detail": {"changed-tag-keys": ["SecurityIncidentStatus"], "service": "ec2",
                           "resource-type": "instance", "tags": {"SecurityIncidentStatus": "Analyze"}}
            }),
            json!({
                "version": "0", "id": "1", "detail-type": "Security Hub Findings - Custom Action",
                "source": "aws.securityhub", "account": MEMBER, "time": "2026-11-29T17:21:34Z",
                "region": "eu-west-1", "resources": [],
                "detail": {"findings": [{"AwsAccountId": account,
                                         "Resources": [{"Type": "AwsEc2Instance", "Id": arn}]}]}
            }),
            json!({"action": "contain", "case_id": "IR-1", "subject": subject}),
            json!({"action": "control_plane", "case_id": "IR-1", "subject": subject,
                   "execution_arn": "arn:aws:states:eu-west-1:222222222222:execution:airf:IR-1"}),
            json!({"action": "normalize", "input": {"case_id": "IR-1", "intent": "investigate",
                   "trigger": "console", "instances": [subject], "retain_artefacts": true}}),
            // The awslabs AIRF framework's console input: numbering its investigation needs a
            // DescribeInstances in the account, through the member role.
            json!({"action": "normalize", "input": {"CaseId": "IR-1", "InstanceId": INSTANCE,
                   "Account": account, "Region": "eu-west-1"}}),
        ]
    }

    fn run(cloud: &FakeCloud, input: Value) -> Result<Value> {
        let mut config = test_config();
        config.member_accounts = vec![MEMBER.to_owned()];
        // Timers: control_plane paces its CloudTrail lookups (as the Lambda's runtime allows).
        config.lookup_events_interval_ms = 1;
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(handle(cloud, &config, input, "2026-11-29T18:00:00Z"))
    }

    #[test]
    fn member_accounts_are_served() {
        for input in inputs(MEMBER) {
            let cloud = FakeCloud::with(facts(INSTANCE));
            let answer = run(&cloud, input.clone());
            assert!(answer.is_ok(), "{input} → {answer:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Any input naming an account outside the deployment's members is refused, naming the
        /// rule, before anything is called: no change, and no read either (on AWS every read in a
        /// member account first assumes its role through STS).
        #[test]
        fn other_accounts_are_rejected_before_any_call(account in "[0-9]{12}") {
            prop_assume!(account != MEMBER);
            for input in inputs(&account) {
                let cloud = FakeCloud::with(facts(INSTANCE));
                let answer = run(&cloud, input.clone());
                prop_assert!(
                    matches!(&answer, Err(Error::BadInput(m)) if m.contains("not one of this deployment's member accounts")),
                    "{} → {:?}", input, answer
                );
                prop_assert!(cloud.lock().calls.is_empty(), "{:?}", cloud.lock().calls);
                prop_assert!(cloud.lock().reads.is_empty(), "{} → {:?}", input, cloud.lock().reads);
            }
        }
    }
}
