//! Parses what invokes the controller: EventBridge tag changes, Security Hub custom actions and
//! workflow tasks. Everything here is untrusted input: a shape the controller does not know is
//! rejected with a message that names what was expected, and nothing is changed.

use crate::model::{
    Evidence, Intent, STATUS_TAG, SentCommand, SnapshotPlan, Status, Subject, Target, TaskRun,
    Verified, is_case_id,
};
use airf_evidence::EvidenceKind;
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Largest event accepted (EventBridge's own limit is 256 KiB).
pub const MAX_EVENT_BYTES: usize = 256 * 1024;
/// Most instances one trigger may name (a fleet larger than this is several triggers).
pub const MAX_TARGETS: usize = 100;

const TAG_SOURCE: &str = "aws.tag";
const TAG_DETAIL_TYPE: &str = "Tag Change on Resource";
const SECURITY_HUB_SOURCE: &str = "aws.securityhub";
const SECURITY_HUB_DETAIL_TYPE: &str = "Security Hub Findings - Custom Action";

/// Why an input was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Rejected(pub String);

fn reject<T>(msg: impl Into<String>) -> Result<T, Rejected> {
    Err(Rejected(msg.into()))
}

/// What invoked the controller.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// An incident trigger: start investigations.
    Trigger(Trigger),
    /// A valid event that asks for nothing (e.g. the tag set to `InProgress` by the controller).
    Ignored(String),
    /// A step of the workflow.
    Task(Task),
}

/// Where a trigger came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerSource {
    /// `SecurityIncidentStatus` tag change.
    Tag,
    /// Security Hub custom action.
    SecurityHub,
}

impl TriggerSource {
    /// Name recorded in the workflow input.
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerSource::Tag => "tag",
            TriggerSource::SecurityHub => "securityhub",
        }
    }
}

/// A request to investigate (or contain) instances.
#[derive(Debug, Clone, PartialEq)]
pub struct Trigger {
    /// Tag or Security Hub.
    pub source: TriggerSource,
    /// Investigate or contain only.
    pub intent: Intent,
    /// For a tag trigger: the status value the event carried (the instance's tag is re-read).
    pub tag_value: Option<Status>,
    /// Instances, deduplicated, in order.
    pub targets: Vec<Target>,
    /// Event time (RFC 3339), used in case ids.
    pub time: Option<String>,
    /// The EventBridge event's id: the same for a redelivery of the event (EventBridge delivers
    /// at least once), another for every new trigger. It names the execution.
    pub event_id: Option<String>,
}

/// A workflow task: `{"action": "...", ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum Task {
    /// First state: turns the workflow input (airf's, or the awslabs AIRF framework's console
    /// shape) into airf's.
    Normalize {
        /// The execution input.
        input: Value,
    },
    /// Claims the instance for this case (tags `InProgress`).
    Claim {
        /// Case.
        case_id: String,
        /// Investigate or contain only.
        intent: Intent,
        /// The instance.
        subject: Subject,
    },
    /// Attaches the acquisition instance profile and notifies.
    Prepare {
        /// Case.
        case_id: String,
        /// The instance.
        subject: Subject,
    },
    /// Succeeds once the instance is SSM-managed; `Airf.Pending` before.
    Managed {
        /// Case.
        case_id: String,
        /// The instance.
        subject: Subject,
    },
    /// Sends the acquisition command.
    Acquire {
        /// Case.
        case_id: String,
        /// The instance.
        subject: Subject,
        /// Memory or disks.
        kind: EvidenceKind,
    },
    /// Reads the command's result; `Airf.Pending` while it runs.
    AcquireStatus {
        /// Case.
        case_id: String,
        /// The instance.
        subject: Subject,
        /// The command sent by `acquire`.
        command: SentCommand,
    },
    /// Takes (or reuses) the case's snapshots of the instance's volumes and answers the tasks
    /// that image them.
    SnapshotPlan {
        /// Case.
        case_id: String,
        /// The instance.
        subject: Subject,
        /// What the memory step left: its result, or why there is none.
        memory: Evidence,
    },
    /// Reads the results of the snapshot tasks.
    SnapshotResults {
        /// Case.
        case_id: String,
        /// The instance.
        subject: Subject,
        /// What `snapshot_plan` answered.
        plan: SnapshotPlan,
        /// The tasks that ran, as the workflow's Map returns them.
        tasks: Vec<TaskRun>,
    },
    /// Reads the manifests the agent wrote and checks them.
    Verify {
        /// Case.
        case_id: String,
        /// The instance.
        subject: Subject,
        /// The acquisition results, or why one was not acquired.
        results: Vec<Evidence>,
        /// The Step Functions execution (`$$.Execution.Id`), named in the countersignatures and
        /// the custody log.
        execution_arn: String,
    },
    /// Builds a Volatility symbol table for every memory image `verify` checked, from what the
    /// capture stored beside it, and stores it there.
    Symbols {
        /// Case.
        case_id: String,
        /// The instance.
        subject: Subject,
        /// What `verify` checked (its `artifacts`): the memory images among them.
        artifacts: Vec<Verified>,
        /// The Step Functions execution (`$$.Execution.Id`), named in each table's manifest.
        execution_arn: String,
    },
    /// Stores what the AWS APIs say about the instance (its description, network, IAM role,
    /// console, CloudTrail events, flow logs) in the case folder, before anything changes it.
    ControlPlane {
        /// Case.
        case_id: String,
        /// The instance.
        subject: Subject,
        /// The Step Functions execution (`$$.Execution.Id`), named in the manifest.
        execution_arn: String,
    },
    /// Isolates the instance.
    Contain {
        /// Case.
        case_id: String,
        /// The instance.
        subject: Subject,
    },
    /// Decides whether to isolate before acquiring (the VPC's endpoints allow it), records why.
    IsolationPlan {
        /// Case.
        case_id: String,
        /// The instance.
        subject: Subject,
    },
    /// Contain-first network isolation: only HTTPS to the VPC's SSM and S3 endpoints.
    Isolate {
        /// Case.
        case_id: String,
        /// The instance.
        subject: Subject,
    },
    /// Undoes a containment (false positive) from what was recorded on the instance.
    Release {
        /// Case.
        case_id: String,
        /// The instance.
        subject: Subject,
    },
    /// Records a failure: tags `Error`, notifies.
    Fail {
        /// Case.
        case_id: String,
        /// The instance.
        subject: Subject,
        /// The workflow's caught error (`{"Error": ..., "Cause": ...}`).
        error: CaughtError,
    },
}

impl Task {
    /// The case and instance a step works on; None for `normalize`, which has neither yet.
    pub fn subject(&self) -> Option<(&str, &Subject)> {
        match self {
            Task::Normalize { .. } => None,
            Task::Claim {
                case_id, subject, ..
            }
            | Task::Prepare { case_id, subject }
            | Task::Managed { case_id, subject }
            | Task::Acquire {
                case_id, subject, ..
            }
            | Task::AcquireStatus {
                case_id, subject, ..
            }
            | Task::SnapshotPlan {
                case_id, subject, ..
            }
            | Task::SnapshotResults {
                case_id, subject, ..
            }
            | Task::Verify {
                case_id, subject, ..
            }
            | Task::Symbols {
                case_id, subject, ..
            }
            | Task::ControlPlane {
                case_id, subject, ..
            }
            | Task::Contain { case_id, subject }
            | Task::IsolationPlan { case_id, subject }
            | Task::Isolate { case_id, subject }
            | Task::Release { case_id, subject }
            | Task::Fail {
                case_id, subject, ..
            } => Some((case_id, subject)),
        }
    }
}

/// Step Functions' Catch output.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaughtError {
    /// Error name (e.g. `Airf.Failed`, `States.Timeout`).
    #[serde(rename = "Error", default)]
    pub error: String,
    /// Details: for a Lambda error, a JSON string with `errorMessage`.
    #[serde(rename = "Cause", default)]
    pub cause: String,
}

impl CaughtError {
    /// The human part of the cause: a Lambda error's `errorMessage`, else the cause itself.
    pub fn message(&self) -> String {
        serde_json::from_str::<Value>(&self.cause)
            .ok()
            .and_then(|v| {
                v.get("errorMessage")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| self.cause.clone())
    }
}

/// Parses raw invocation bytes.
pub fn parse_bytes(bytes: &[u8]) -> Result<Request, Rejected> {
    if bytes.len() > MAX_EVENT_BYTES {
        return reject(format!(
            "input is {} bytes; the controller takes at most {MAX_EVENT_BYTES} (an EventBridge event's limit)",
            bytes.len()
        ));
    }
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| Rejected(format!("input is not JSON: {e}")))?;
    parse(value)
}

/// Parses an invocation payload.
pub fn parse(value: Value) -> Result<Request, Rejected> {
    let size = serde_json::to_vec(&value)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > MAX_EVENT_BYTES {
        return reject(format!(
            "input is {size} bytes; the controller takes at most {MAX_EVENT_BYTES}"
        ));
    }
    let Some(object) = value.as_object() else {
        return reject("input is not a JSON object");
    };
    if object.contains_key("action") {
        let task: Task =
            serde_json::from_value(value).map_err(|e| Rejected(format!("workflow task: {e}")))?;
        check_task(&task)?;
        return Ok(Request::Task(task));
    }
    if object.contains_key("detail-type") {
        let event: EventBridgeEvent<Value> = serde_json::from_value(value)
            .map_err(|e| Rejected(format!("EventBridge event: {e}")))?;
        return match (event.source.as_str(), event.detail_type.as_str()) {
            (TAG_SOURCE, TAG_DETAIL_TYPE) => tag_change(&event),
            (SECURITY_HUB_SOURCE, SECURITY_HUB_DETAIL_TYPE) => security_hub(&event),
            (source, detail_type) => reject(format!(
                "EventBridge event {source:?}/{detail_type:?} is not one the controller handles \
                 ({TAG_SOURCE:?}/{TAG_DETAIL_TYPE:?} or {SECURITY_HUB_SOURCE:?}/{SECURITY_HUB_DETAIL_TYPE:?}); \
                 check the rule's event pattern"
            )),
        };
    }
    if object.contains_key("InstanceId") || object.contains_key("CaseId") {
        return reject(
            "this is a workflow input (CaseId, InstanceId, Account, Region): start the Step Functions \
             workflow with it, not the controller function",
        );
    }
    reject(
        "unknown input: expected an EventBridge tag-change event, a Security Hub custom action, or a \
         workflow task {\"action\": ...}",
    )
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct TagChangeDetail {
    #[serde(default)]
    changed_tag_keys: Vec<String>,
    service: String,
    resource_type: String,
    #[serde(default)]
    tags: std::collections::BTreeMap<String, String>,
}

fn tag_change(event: &EventBridgeEvent<Value>) -> Result<Request, Rejected> {
    let detail: TagChangeDetail = serde_json::from_value(event.detail.clone())
        .map_err(|e| Rejected(format!("tag change detail: {e}")))?;
    if detail.service != "ec2" || detail.resource_type != "instance" {
        return reject(format!(
            "tag change on {}/{}: the controller handles ec2/instance only",
            detail.service, detail.resource_type
        ));
    }
    if !detail.changed_tag_keys.iter().any(|k| k == STATUS_TAG) {
        return Ok(Request::Ignored(format!("{STATUS_TAG} did not change")));
    }
    let resources = event.resources.as_deref().unwrap_or_default();
    let [arn] = resources else {
        return reject(format!(
            "tag change names {} resources; expected exactly one instance ARN",
            resources.len()
        ));
    };
    let target = instance_arn(arn)?;
    if event.account.as_deref() != Some(target.account.as_str())
        || event.region.as_deref() != Some(target.region.as_str())
    {
        return reject(format!(
            "instance ARN {arn} is not in the event's account/region ({:?}/{:?})",
            event.account, event.region
        ));
    }
    let value = detail.tags.get(STATUS_TAG).map(String::as_str);
    let (intent, status) = match value.and_then(Status::parse) {
        Some(Status::Analyze) => (Intent::Investigate, Status::Analyze),
        Some(Status::Contain) => (Intent::Contain, Status::Contain),
        Some(Status::Release) => (Intent::Release, Status::Release),
        _ => {
            return Ok(Request::Ignored(format!(
                "{STATUS_TAG} is now {value:?}; only Analyze, Contain and Release start work"
            )));
        }
    };
    Ok(Request::Trigger(Trigger {
        source: TriggerSource::Tag,
        intent,
        tag_value: Some(status),
        targets: vec![target],
        time: event.time.map(|t| t.to_rfc3339()),
        event_id: event.id.clone(),
    }))
}

#[derive(Debug, Deserialize)]
struct SecurityHubDetail {
    #[serde(default)]
    findings: Vec<Finding>,
}

#[derive(Debug, Deserialize)]
struct Finding {
    #[serde(rename = "AwsAccountId", default)]
    account: Option<String>,
    #[serde(rename = "Resources", default)]
    resources: Vec<FindingResource>,
}

#[derive(Debug, Deserialize)]
struct FindingResource {
    #[serde(rename = "Type")]
    kind: String,
    #[serde(rename = "Id")]
    id: String,
}

fn security_hub(event: &EventBridgeEvent<Value>) -> Result<Request, Rejected> {
    let detail: SecurityHubDetail = serde_json::from_value(event.detail.clone())
        .map_err(|e| Rejected(format!("Security Hub detail: {e}")))?;
    let mut targets: Vec<Target> = Vec::new();
    for finding in &detail.findings {
        for resource in finding
            .resources
            .iter()
            .filter(|r| r.kind == "AwsEc2Instance")
        {
            let target = instance_arn(&resource.id)?;
            if let Some(account) = &finding.account
                && *account != target.account
            {
                return reject(format!(
                    "finding of account {account} names instance {} of account {}",
                    resource.id, target.account
                ));
            }
            if !targets.contains(&target) {
                targets.push(target);
            }
        }
    }
    if targets.is_empty() {
        return reject(
            "the Security Hub findings name no AwsEc2Instance resource; airf acquires EC2 instances only",
        );
    }
    if targets.len() > MAX_TARGETS {
        return reject(format!(
            "the findings name {} instances; at most {MAX_TARGETS} per action (select fewer findings)",
            targets.len()
        ));
    }
    Ok(Request::Trigger(Trigger {
        source: TriggerSource::SecurityHub,
        intent: Intent::Investigate,
        tag_value: None,
        targets,
        time: event.time.map(|t| t.to_rfc3339()),
        event_id: event.id.clone(),
    }))
}

/// Parses `arn:<partition>:ec2:<region>:<account>:instance/<id>`.
pub fn instance_arn(arn: &str) -> Result<Target, Rejected> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [prefix, partition, service, region, account, resource] = parts.as_slice() else {
        return reject(format!("{arn:?} is not an ARN"));
    };
    if *prefix != "arn" || !partition.starts_with("aws") || *service != "ec2" {
        return reject(format!("{arn:?} is not an EC2 ARN"));
    }
    let Some(instance_id) = resource.strip_prefix("instance/") else {
        return reject(format!("{arn:?} is not an EC2 instance ARN"));
    };
    let target = Target {
        instance_id: instance_id.to_owned(),
        account: (*account).to_owned(),
        region: (*region).to_owned(),
    };
    target
        .validate()
        .map_err(|e| Rejected(format!("{arn:?}: {e}")))?;
    Ok(target)
}

fn check_subject(case_id: &str, subject: &Subject) -> Result<(), Rejected> {
    if !is_case_id(case_id) {
        return reject(format!(
            "case id {case_id:?}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        ));
    }
    subject.target.validate().map_err(Rejected)
}

fn check_task(task: &Task) -> Result<(), Rejected> {
    if let Task::Verify { execution_arn, .. }
    | Task::Symbols { execution_arn, .. }
    | Task::ControlPlane { execution_arn, .. } = task
        && !is_execution_arn(execution_arn)
    {
        return reject(format!(
            "execution_arn {execution_arn:?} is not a Step Functions execution ARN \
             (the workflow passes $$.Execution.Id)"
        ));
    }
    match task.subject() {
        Some((case_id, subject)) => check_subject(case_id, subject),
        None => Ok(()),
    }
}

/// `arn:<partition>:states:<region>:<account>:execution:<state machine>[/<map run>]:<name>`
/// (a Distributed Map's child executions have the `/` part), in the characters Step Functions
/// allows in names: it goes into signed statements and custody entries verbatim.
pub fn is_execution_arn(s: &str) -> bool {
    let parts: Vec<&str> = s.splitn(7, ':').collect();
    let [arn, partition, service, region, account, kind, rest] = parts.as_slice() else {
        return false;
    };
    *arn == "arn"
        && partition.starts_with("aws")
        && *service == "states"
        && crate::model::is_region(region)
        && crate::model::is_account_id(account)
        && *kind == "execution"
        && s.len() <= 2048
        && rest.split(':').count() == 2
        && rest.split(':').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'/' | b'.'))
        })
}

#[cfg(test)]
mod tests;
