//! What the controller knows about an investigation: targets, instance facts, tags and the
//! shapes the workflow carries from step to step (its input, the command `acquire` sent, the
//! results `verify` checks). They live here, not in the step that makes them, because the event
//! parser and several steps share them: keeping them in one place keeps the modules free of
//! import cycles.

use airf_evidence::EvidenceKind;
use airf_evidence::report::RunReport;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The tag responders and automations set, and the controller updates.
pub const STATUS_TAG: &str = "SecurityIncidentStatus";
/// Case of the investigation that claimed the instance.
pub const CASE_TAG: &str = "airf:case";
/// How many investigations have claimed the instance (names executions uniquely).
pub const INVESTIGATIONS_TAG: &str = "airf:investigations";
/// Set by contain, to the case: tells the controller's own `Contain` tag from a responder's.
pub const CONTAINED_TAG: &str = "airf:contained";
/// Short reason of the last error.
pub const REASON_TAG: &str = "airf:reason";
/// Tag on security groups and snapshots the controller created.
pub const MANAGED_TAG: &str = "airf:managed";
/// Tag on the snapshots the controller took: the instance whose volume it is.
pub const INSTANCE_TAG: &str = "airf:instance";
/// Set by a responder on the instance: where its disks are read from ([`DiskSource`]).
pub const DISK_SOURCE_TAG: &str = "airf:disk-source";
/// Set by the controller when memory was not acquired: why.
pub const MEMORY_TAG: &str = "airf:memory";

/// Where an investigation reads the instance's disks from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiskSource {
    /// The agent on the instance, through SSM (the default): the live block devices.
    Ssm,
    /// EBS snapshots of its volumes, read through the EBS direct APIs by a Fargate task: nothing
    /// runs on the instance.
    Snapshot,
}

impl DiskSource {
    /// The [`DISK_SOURCE_TAG`] value, parsed: absent is [`DiskSource::Ssm`]; a value airf does
    /// not know is refused, naming those it knows (a typo must not silently mean "the default").
    pub fn from_tag(value: Option<&str>) -> Result<Self, String> {
        match value {
            None | Some("ssm") => Ok(DiskSource::Ssm),
            Some("snapshot") => Ok(DiskSource::Snapshot),
            Some(other) => Err(format!(
                "tag {DISK_SOURCE_TAG}={other:?}: use \"snapshot\" (disks from EBS snapshots) or \"ssm\" \
                 (the default: the agent on the instance)"
            )),
        }
    }
}

/// Values of [`STATUS_TAG`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// Acquire evidence, then contain.
    Analyze,
    /// An investigation is running.
    InProgress,
    /// Contain (isolate) only; set by contain when it is done.
    Contain,
    /// The investigation failed; see `airf:reason`.
    Error,
    /// Set by a responder: the instance was a false positive, undo its containment.
    Release,
    /// Set by `release` when the instance has its groups, profile, protection and load-balancer
    /// membership back.
    Released,
}

impl Status {
    /// The tag value.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Analyze => "Analyze",
            Status::InProgress => "InProgress",
            Status::Contain => "Contain",
            Status::Error => "Error",
            Status::Release => "Release",
            Status::Released => "Released",
        }
    }

    /// Parses a tag value (exact, as AWS tags are case-sensitive).
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "Analyze" => Some(Status::Analyze),
            "InProgress" => Some(Status::InProgress),
            "Contain" => Some(Status::Contain),
            "Error" => Some(Status::Error),
            "Release" => Some(Status::Release),
            "Released" => Some(Status::Released),
            _ => None,
        }
    }
}

/// What an investigation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    /// Prepare, acquire memory and disks, verify, contain.
    Investigate,
    /// Contain only (the `Contain` tag), as the awslabs AIRF framework does.
    Contain,
    /// Undo a containment (the `Release` tag): a false positive.
    Release,
}

/// One instance in one account and region.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Target {
    /// `i-…`.
    pub instance_id: String,
    /// 12-digit account id.
    pub account: String,
    /// Region, e.g. `eu-west-1`.
    pub region: String,
}

impl Target {
    /// `arn:<partition>:ec2:<region>:<account>:instance/<id>`: how IAM conditions name it.
    pub fn instance_arn(&self) -> String {
        format!(
            "arn:{}:ec2:{}:{}:instance/{}",
            partition(&self.region),
            self.region,
            self.account,
            self.instance_id
        )
    }

    /// Checks the three fields' shapes; they come from events and people.
    pub fn validate(&self) -> Result<(), String> {
        if !is_instance_id(&self.instance_id) {
            return Err(format!(
                "{:?} is not an EC2 instance id (i- and 8 or 17 hex digits)",
                self.instance_id
            ));
        }
        if !is_account_id(&self.account) {
            return Err(format!(
                "{:?} is not a 12-digit AWS account id",
                self.account
            ));
        }
        if !is_region(&self.region) {
            return Err(format!(
                "{:?} is not an AWS region name (like eu-west-1)",
                self.region
            ));
        }
        Ok(())
    }
}

/// A tag value every AWS service accepts: letters, digits, spaces and `_ . : / = + - @`, up to
/// 256 characters; anything else becomes a space, and runs of white space one space.
pub fn tag_value(text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || " _.:/=+-@".contains(c) {
                c
            } else {
                ' '
            }
        })
        .collect();
    let squeezed = clean.split_whitespace().collect::<Vec<_>>().join(" ");
    squeezed.chars().take(256).collect()
}

/// The ARN partition of a region.
pub fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// `i-` followed by 8 or 17 lowercase hex digits.
pub fn is_instance_id(s: &str) -> bool {
    s.strip_prefix("i-").is_some_and(|hex| {
        (hex.len() == 8 || hex.len() == 17)
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Twelve ASCII digits.
pub fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// `xx-name-N` shaped (lowercase letters, digits, dashes; 4 to 32 characters).
pub fn is_region(s: &str) -> bool {
    (4..=32).contains(&s.len())
        && s.contains('-')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Case ids go into S3 keys, tags and SSM parameters (`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`).
pub fn is_case_id(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphanumeric())
        && s.len() <= 64
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// An instance's lifecycle state, as far as the controller cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    /// pending or running.
    Running,
    /// stopping or stopped: memory is gone, disks remain.
    Stopped,
    /// shutting-down or terminated.
    Gone,
}

/// A network interface and its security groups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    /// `eni-…`.
    pub id: String,
    /// Security group ids now attached.
    pub groups: Vec<String>,
}

/// An attached EBS volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// `vol-…`.
    pub id: String,
    /// Device name, e.g. `/dev/xvda`.
    pub device: String,
    /// Whether the volume is deleted with the instance.
    pub delete_on_termination: bool,
}

/// The instance's IAM instance profile association.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileAssociation {
    /// `iip-assoc-…`.
    pub association_id: String,
    /// Instance profile ARN.
    pub profile_arn: String,
}

impl ProfileAssociation {
    /// The profile's name (last path element of the ARN).
    pub fn profile_name(&self) -> &str {
        self.profile_arn
            .rsplit('/')
            .next()
            .unwrap_or(&self.profile_arn)
    }
}

/// What DescribeInstances (and the association call) tell about an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceFacts {
    /// Where it is.
    pub target: Target,
    /// Lifecycle state.
    pub state: InstanceState,
    /// All tags.
    pub tags: BTreeMap<String, String>,
    /// VPC id; None for EC2-Classic leftovers (not containable by security group).
    pub vpc_id: Option<String>,
    /// Network interfaces.
    pub interfaces: Vec<Interface>,
    /// EBS volumes.
    pub volumes: Vec<Volume>,
    /// Current instance profile association.
    pub profile: Option<ProfileAssociation>,
}

impl InstanceFacts {
    /// The value of a tag.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.get(key).map(String::as_str)
    }

    /// The status tag, parsed.
    pub fn status(&self) -> Option<Status> {
        self.tag(STATUS_TAG).and_then(Status::parse)
    }

    /// How many investigations have claimed this instance.
    pub fn investigations(&self) -> u32 {
        self.tag(INVESTIGATIONS_TAG)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

/// One instance of a workflow run: the Map state's item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// Where it is.
    #[serde(flatten)]
    pub target: Target,
    /// The investigation number this run claims (`airf:investigations` after the claim).
    pub claim: u32,
}

/// The workflow's input, as `start` writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowInput {
    /// Case id: evidence keys, tags, notifications.
    pub case_id: String,
    /// Investigate or contain only.
    pub intent: Intent,
    /// What triggered it: `tag`, `securityhub`, `console`.
    pub trigger: String,
    /// Instances; the workflow's Map runs one branch each.
    pub instances: Vec<Subject>,
    /// The awslabs AIRF framework's flag. airf creates no helper instances or volumes and always keeps
    /// evidence and snapshots, so this is carried for the record only.
    pub retain_artefacts: bool,
}

/// The command `acquire` sent: `acquire_status` reads its invocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentCommand {
    /// SSM command id.
    pub command_id: String,
    /// Document name.
    pub document: String,
    /// The document's shell step, for GetCommandInvocation.
    pub plugin: String,
    /// Memory or disks.
    pub kind: EvidenceKind,
}

/// A finished acquisition: the agent's own result, which `verify` checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcquisitionResult {
    /// Memory or disks.
    pub kind: EvidenceKind,
    /// SSM command id.
    pub command_id: String,
    /// SSM's status.
    pub ssm_status: String,
    /// The agent's JSON result.
    pub report: RunReport,
}

/// One volume's snapshot and the RunTask that reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRun {
    /// `vol-…`.
    pub volume_id: String,
    /// Its device name on the instance, e.g. `/dev/xvda`.
    pub device: String,
    /// `snap-…`, tagged `airf:case` and `airf:instance`.
    pub snapshot_id: String,
    /// Whether it was taken by an earlier step of this case (and reused), not now.
    pub reused: bool,
    /// RunTask `Cluster`.
    pub cluster: String,
    /// RunTask `TaskDefinition`.
    pub task_definition: String,
    /// The container whose command is overridden.
    pub container: String,
    /// `AwsvpcConfiguration.Subnets`.
    pub subnets: Vec<String>,
    /// `AwsvpcConfiguration.SecurityGroups`.
    pub security_groups: Vec<String>,
    /// The container's command: `airf-agent` arguments.
    pub command: Vec<String>,
}

/// What `snapshot_plan` (actions/snapshots.rs) answers: the workflow maps over `tasks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotPlan {
    /// One per attached EBS volume, in the instance's order.
    pub tasks: Vec<SnapshotRun>,
}

/// One finished task, as the workflow's Map returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRun {
    /// The snapshot it read.
    pub snapshot_id: String,
    /// `arn:aws:ecs:…:task/…`.
    pub task_arn: String,
}

/// What ran the agent for an [`AcquisitionResult`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runner<'a> {
    /// An SSM command on the instance (its id).
    Ssm(&'a str),
    /// A snapshot task (its ECS task ARN).
    EcsTask(&'a str),
}

impl std::fmt::Display for Runner<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Runner::Ssm(id) => write!(f, "SSM command {id}"),
            Runner::EcsTask(arn) => write!(f, "ECS task {arn}"),
        }
    }
}

impl AcquisitionResult {
    /// What ran the agent: snapshot results carry the ECS task's ARN where SSM's carry the
    /// command id.
    pub fn runner(&self) -> Runner<'_> {
        let id = self.command_id.as_str();
        if id.starts_with("arn:") && id.split(':').nth(2) == Some("ecs") {
            Runner::EcsTask(id)
        } else {
            Runner::Ssm(id)
        }
    }
}

/// Evidence the workflow could not acquire, and why: recorded instead of an acquisition result
/// (memory of a stopped instance, or of one SSM never reached).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotAcquired {
    /// Memory (disks are always acquired, from snapshots at worst).
    pub kind: EvidenceKind,
    /// Why, for the responder.
    pub not_acquired: String,
}

/// One artifact `verify` checked (actions/verify.rs): the symbols step reads the memory ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verified {
    /// Memory or disk.
    pub kind: EvidenceKind,
    /// What was read (device, `/proc/kcore`, …).
    pub source: String,
    /// `s3://bucket/key` of the manifest.
    pub manifest: String,
    /// `s3://bucket/key` of the image.
    pub image: String,
    /// Raw bytes and their SHA-256.
    pub raw_size: u64,
    /// SHA-256 of the raw stream.
    pub raw_sha256: String,
    /// SHA-256 of the stored object.
    pub compressed_sha256: String,
    /// Zero-filled unreadable bytes.
    pub unreadable_bytes: u64,
}

/// What an acquisition step left for `verify`: one result (an SSM command), several (one
/// snapshot task per volume), or why there is none.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Evidence {
    /// One agent run.
    Acquired(Box<AcquisitionResult>),
    /// Several agent runs of one kind.
    Several(Vec<AcquisitionResult>),
    /// None, and why.
    NotAcquired(NotAcquired),
}

impl<'de> Deserialize<'de> for Evidence {
    /// By shape, so that an acquisition result that does not parse says why, rather than
    /// "matches no variant": an array is several results, an object with `not_acquired` is a
    /// reason, anything else one result.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let value = serde_json::Value::deserialize(d)?;
        let parsed = if value.is_array() {
            serde_json::from_value(value).map(Evidence::Several)
        } else if value.get("not_acquired").is_some() {
            serde_json::from_value(value).map(Evidence::NotAcquired)
        } else {
            serde_json::from_value(value).map(|r| Evidence::Acquired(Box::new(r)))
        };
        parsed.map_err(D::Error::custom)
    }
}

impl Evidence {
    /// The acquisition results in it.
    pub fn results(&self) -> &[AcquisitionResult] {
        match self {
            Evidence::Acquired(r) => std::slice::from_ref(r),
            Evidence::Several(rs) => rs,
            Evidence::NotAcquired(_) => &[],
        }
    }

    /// Why it was not acquired, if it was not.
    pub fn not_acquired(&self) -> Option<&NotAcquired> {
        match self {
            Evidence::NotAcquired(n) => Some(n),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn evidence_is_read_by_shape() {
        let result = serde_json::json!({"kind": "disk", "command_id": "c-1", "ssm_status": "Success",
            "report": {"command": "disk", "status": "complete", "exit_code": 0, "case": "IR-1",
                       "evidence_folder": "s3://b/e/IR-1/i-1/t/", "sources": [], "errors": [],
                       "duration_seconds": 1.0}});
        let one: Evidence = serde_json::from_value(result.clone()).unwrap();
        assert_eq!(one.results().len(), 1);
        let two: Evidence = serde_json::from_value(serde_json::json!([result, result])).unwrap();
        assert_eq!(two.results().len(), 2);
        let none: Evidence = serde_json::from_value(
            serde_json::json!({"kind": "memory", "not_acquired": "instance stopped"}),
        )
        .unwrap();
        assert!(none.results().is_empty());
        assert_eq!(
            none.not_acquired().unwrap().not_acquired,
            "instance stopped"
        );
        // A broken result names its missing field.
        let err = serde_json::from_value::<Evidence>(serde_json::json!({"kind": "disk"}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("command_id"), "{err}");
        assert_eq!(
            serde_json::to_value(&none).unwrap()["not_acquired"],
            "instance stopped"
        );
    }

    #[test]
    fn the_disk_source_tag_is_read_strictly() {
        assert_eq!(DiskSource::from_tag(None), Ok(DiskSource::Ssm));
        assert_eq!(DiskSource::from_tag(Some("ssm")), Ok(DiskSource::Ssm));
        assert_eq!(
            DiskSource::from_tag(Some("snapshot")),
            Ok(DiskSource::Snapshot)
        );
        let err = DiskSource::from_tag(Some("Snapshots")).unwrap_err();
        assert!(
            err.contains("airf:disk-source") && err.contains("\"snapshot\""),
            "{err}"
        );
    }

    #[test]
    fn ids_are_checked() {
        assert!(is_instance_id("i-0123456789abcdef0"));
        assert!(is_instance_id("i-01234567"));
        assert!(!is_instance_id("i-0123456789ABCDEF0"));
        assert!(!is_instance_id("i-0123"));
        assert!(!is_instance_id("vol-0123456789abcdef0"));
        assert!(is_account_id("123456789012"));
        assert!(!is_account_id("12345678901a"));
        assert!(is_region("eu-west-1") && is_region("us-gov-west-1"));
        assert!(!is_region("EU-WEST-1") && !is_region("x") && !is_region("-eu-"));
        assert!(
            is_case_id("IR-2026-0042")
                && !is_case_id("-x")
                && !is_case_id("a/b")
                && !is_case_id("")
        );
    }

    #[test]
    fn instance_arns_carry_the_region_partition() {
        let target = |region: &str| Target {
            instance_id: "i-0123456789abcdef0".into(),
            account: "111111111111".into(),
            region: region.into(),
        };
        assert_eq!(
            target("eu-west-1").instance_arn(),
            "arn:aws:ec2:eu-west-1:111111111111:instance/i-0123456789abcdef0"
        );
        assert!(
            target("cn-north-1")
                .instance_arn()
                .starts_with("arn:aws-cn:ec2:cn-north-1:")
        );
        assert!(
            target("us-gov-west-1")
                .instance_arn()
                .starts_with("arn:aws-us-gov:ec2:us-gov-west-1:")
        );
    }

    proptest! {
        #[test]
        fn accepted_case_ids_are_safe_in_keys_and_ssm(s in ".{0,80}") {
            if is_case_id(&s) {
                prop_assert!(s.len() <= 64);
                prop_assert!(s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)));
            }
        }

        #[test]
        fn status_round_trips(s in "(Analyze|InProgress|Contain|Error|Release|Released|analyze|released|x)") {
            if let Some(st) = Status::parse(&s) { prop_assert_eq!(st.as_str(), s.as_str()); }
        }
    }
}
