//! The controller's settings, from its Lambda environment.

use crate::error::{Error, Result};

/// Everything the controller needs to know about the deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Step Functions workflow that `start` launches.
    pub state_machine_arn: String,
    /// SNS topic for incident notifications (e-mail, ticketing).
    pub incident_topic_arn: String,
    /// SNS topic for chat (AWS Chatbot → Slack); empty: none.
    pub chat_topic_arn: String,
    /// Role the controller assumes in member accounts.
    pub member_role_name: String,
    /// SSM-capable instance profile (member accounts) that prepare attaches.
    pub acquisition_profile_name: String,
    /// Deny-all instance profile (member accounts) that contain attaches.
    pub isolation_profile_name: String,
    /// Managed policy (member accounts) that contain uses as the permissions boundary revoking
    /// a contained instance's earlier sessions (template 4's `RevokedSessionsPolicyName`).
    pub revoke_policy_name: String,
    /// Evidence bucket (Forensics account).
    pub evidence_bucket: String,
    /// Key prefix for evidence.
    pub evidence_prefix: String,
    /// Region of the evidence and artifact buckets.
    pub evidence_region: String,
    /// Artifact bucket holding `agent/<version>/airf-agent`.
    pub artifact_bucket: String,
    /// Agent version to run.
    pub agent_version: String,
    /// SHA-256 of that agent binary.
    pub agent_sha256: String,
    /// SSE-KMS key for evidence; empty: bucket default.
    pub kms_key_id: String,
    /// Asymmetric KMS key (ECC_NIST_P256, SIGN_VERIFY) that countersigns verified manifests.
    pub signing_key_arn: String,
    /// SSM document for memory.
    pub memory_document: String,
    /// SSM document for disks.
    pub disk_document: String,
    /// SSM document for triage (the host's volatile state, before memory).
    pub triage_document: String,
    /// S3 endpoint override the agent uploads to (tests); empty: AWS.
    pub agent_endpoint_url: String,
    /// Member accounts the controller may act in; empty: any the member role exists in.
    pub member_accounts: Vec<String>,
    /// The Fargate task that images disks from EBS snapshots; None: not deployed (an instance
    /// that SSM cannot reach then ends in Error, as before).
    pub snapshot: Option<SnapshotTask>,
    /// Milliseconds between two CloudTrail LookupEvents requests of the control-plane step
    /// (`AIRF_LOOKUP_EVENTS_INTERVAL_MS`, 500: the API's 2 a second per account and region).
    pub lookup_events_interval_ms: u64,
}

/// Where `airf-agent snapshot` runs: template 3's ECS cluster and task definition, in the
/// Security account, and the member accounts' reader role it assumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotTask {
    /// `AIRF_SNAPSHOT_CLUSTER_ARN`.
    pub cluster_arn: String,
    /// `AIRF_SNAPSHOT_TASK_DEFINITION_ARN` (family `airf-snapshot`, container `airf-agent`).
    pub task_definition_arn: String,
    /// `AIRF_SNAPSHOT_SUBNET_IDS`: where the task's interface goes (a route to S3, STS, EC2 and
    /// EBS: NAT or endpoints).
    pub subnet_ids: Vec<String>,
    /// `AIRF_SNAPSHOT_SECURITY_GROUP_ID`: outbound 443 only.
    pub security_group_id: String,
    /// `AIRF_SNAPSHOT_READER_ROLE_NAME` (`AirfSnapshotReader`): the member-account role the
    /// agent assumes to read the snapshots in place.
    pub reader_role_name: String,
}

/// The snapshot task's variables: all four set, or none (with the role name's default).
const SNAPSHOT_VARS: [&str; 4] = [
    "AIRF_SNAPSHOT_CLUSTER_ARN",
    "AIRF_SNAPSHOT_TASK_DEFINITION_ARN",
    "AIRF_SNAPSHOT_SUBNET_IDS",
    "AIRF_SNAPSHOT_SECURITY_GROUP_ID",
];

/// The container the workflow overrides the command of (template 3's task definition).
pub const SNAPSHOT_CONTAINER: &str = "airf-agent";

impl SnapshotTask {
    /// Reads the `AIRF_SNAPSHOT_*` variables through `optional` (empty when unset): None when
    /// none of the four is set; an error naming the missing or malformed one otherwise, since a
    /// half-deployed task would only fail later, on the instance that needed it.
    fn from_lookup(optional: impl Fn(&str, &str) -> String) -> Result<Option<Self>> {
        let values = SNAPSHOT_VARS.map(|name| optional(name, ""));
        if values.iter().all(String::is_empty) {
            return Ok(None);
        }
        if let Some((name, _)) = SNAPSHOT_VARS
            .iter()
            .zip(&values)
            .find(|(_, v)| v.is_empty())
        {
            return Err(Error::Config(format!(
                "{name} is not set, yet {} are: the snapshot task is half deployed (set all four, \
                 or none to run without it)",
                SNAPSHOT_VARS
                    .iter()
                    .zip(&values)
                    .filter(|(_, v)| !v.is_empty())
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let [cluster_arn, task_definition_arn, subnets, security_group_id] = values;
        let task = SnapshotTask {
            cluster_arn,
            task_definition_arn,
            subnet_ids: subnets
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            security_group_id,
            reader_role_name: optional("AIRF_SNAPSHOT_READER_ROLE_NAME", "AirfSnapshotReader"),
        };
        task.check()?;
        Ok(Some(task))
    }

    /// The shapes ECS and IAM accept; they reach RunTask and an ARN verbatim.
    fn check(&self) -> Result<()> {
        let bad = |name: &str, value: &str, want: &str| {
            Err(Error::Config(format!("{name}: {value:?} is not {want}")))
        };
        if !is_ecs_arn(&self.cluster_arn, "cluster/") {
            return bad(
                "AIRF_SNAPSHOT_CLUSTER_ARN",
                &self.cluster_arn,
                "an ECS cluster ARN (arn:aws:ecs:<region>:<account>:cluster/<name>)",
            );
        }
        if !is_ecs_arn(&self.task_definition_arn, "task-definition/") {
            return bad(
                "AIRF_SNAPSHOT_TASK_DEFINITION_ARN",
                &self.task_definition_arn,
                "an ECS task definition ARN (arn:aws:ecs:<region>:<account>:task-definition/<family>:<revision>)",
            );
        }
        if self.subnet_ids.is_empty() || self.subnet_ids.len() > 16 {
            return bad(
                "AIRF_SNAPSHOT_SUBNET_IDS",
                &self.subnet_ids.join(","),
                "1 to 16 comma-separated subnet ids (awsvpc takes at most 16)",
            );
        }
        if let Some(s) = self.subnet_ids.iter().find(|s| !is_ec2_id(s, "subnet-")) {
            return bad("AIRF_SNAPSHOT_SUBNET_IDS", s, "a subnet id (subnet-<hex>)");
        }
        if !is_ec2_id(&self.security_group_id, "sg-") {
            return bad(
                "AIRF_SNAPSHOT_SECURITY_GROUP_ID",
                &self.security_group_id,
                "a security group id (sg-<hex>)",
            );
        }
        if self.reader_role_name.is_empty()
            || self.reader_role_name.len() > 64
            || !self
                .reader_role_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
        {
            return bad(
                "AIRF_SNAPSHOT_READER_ROLE_NAME",
                &self.reader_role_name,
                "an IAM role name",
            );
        }
        Ok(())
    }
}

/// A key prefix the agent accepts (agent/src/naming.rs `check_prefix`) and S3 keeps as typed:
/// names of `A-Z a-z 0-9 . _ -` separated by single `/`, none `.` or `..`; at most 512
/// characters, so that keys under it stay within S3's 1,024.
pub fn is_evidence_prefix(prefix: &str) -> bool {
    prefix.len() <= 512
        && prefix.split('/').all(|segment| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        })
}

/// `arn:<partition>:ecs:<region>:<account>:<kind><name>`.
fn is_ecs_arn(s: &str, kind: &str) -> bool {
    let parts: Vec<&str> = s.splitn(6, ':').collect();
    let [arn, partition, service, region, account, resource] = parts.as_slice() else {
        return false;
    };
    *arn == "arn"
        && partition.starts_with("aws")
        && *service == "ecs"
        && crate::model::is_region(region)
        && crate::model::is_account_id(account)
        && resource.strip_prefix(kind).is_some_and(|name| {
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_:".contains(&b))
        })
}

/// `<prefix><hex>` (8 or 17 hex digits, as EC2 makes them).
fn is_ec2_id(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix).is_some_and(|hex| {
        (hex.len() == 8 || hex.len() == 17)
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

impl Config {
    /// Reads the `AIRF_*` variables through `get` (the process environment in production).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let required = |name: &str| -> Result<String> {
            match get(name) {
                Some(v) if !v.trim().is_empty() => Ok(v.trim().to_owned()),
                _ => Err(Error::Config(format!("{name} is not set"))),
            }
        };
        let optional = |name: &str, default: &str| -> String {
            get(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| default.to_owned())
        };
        let mut config = Config {
            state_machine_arn: required("AIRF_STATE_MACHINE_ARN")?,
            incident_topic_arn: required("AIRF_INCIDENT_TOPIC_ARN")?,
            chat_topic_arn: optional("AIRF_CHAT_TOPIC_ARN", ""),
            member_role_name: optional("AIRF_MEMBER_ROLE_NAME", "AirfControllerAccess"),
            acquisition_profile_name: optional(
                "AIRF_ACQUISITION_PROFILE_NAME",
                "AirfAcquisitionInstanceProfile",
            ),
            isolation_profile_name: optional(
                "AIRF_ISOLATION_PROFILE_NAME",
                "AirfIsolatedInstanceProfile",
            ),
            revoke_policy_name: optional("AIRF_REVOKE_POLICY_NAME", "AirfRevokedSessions"),
            evidence_bucket: required("AIRF_EVIDENCE_BUCKET")?,
            evidence_prefix: optional("AIRF_EVIDENCE_PREFIX", "evidence"),
            evidence_region: required("AIRF_EVIDENCE_REGION")?,
            artifact_bucket: required("AIRF_ARTIFACT_BUCKET")?,
            agent_version: required("AIRF_AGENT_VERSION")?,
            agent_sha256: required("AIRF_AGENT_SHA256")?,
            kms_key_id: optional("AIRF_KMS_KEY_ID", ""),
            signing_key_arn: required("AIRF_SIGNING_KEY_ARN")?,
            memory_document: optional("AIRF_MEMORY_DOCUMENT", "airf-acquire-memory"),
            disk_document: optional("AIRF_DISK_DOCUMENT", "airf-acquire-disk"),
            triage_document: optional("AIRF_TRIAGE_DOCUMENT", "airf-acquire-triage"),
            agent_endpoint_url: optional("AIRF_AGENT_ENDPOINT_URL", ""),
            member_accounts: optional("AIRF_MEMBER_ACCOUNTS", "")
                .split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(str::to_owned)
                .collect(),
            snapshot: None,
            lookup_events_interval_ms: 500,
        };
        if let Some(bad) = config
            .member_accounts
            .iter()
            .find(|a| !crate::model::is_account_id(a))
        {
            return Err(Error::Config(format!(
                "AIRF_MEMBER_ACCOUNTS: {bad:?} is not a 12-digit account id"
            )));
        }
        if !is_evidence_prefix(&config.evidence_prefix) {
            return Err(Error::Config(format!(
                "AIRF_EVIDENCE_PREFIX: {:?} is not a key prefix the agent stores under: use names of \
                 A-Z a-z 0-9 . _ - separated by single '/', none of them '.' or '..' (e.g. evidence)",
                config.evidence_prefix
            )));
        }
        if config.revoke_policy_name.len() > 128
            || !config
                .revoke_policy_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
        {
            return Err(Error::Config(format!(
                "AIRF_REVOKE_POLICY_NAME: {:?} is not an IAM policy name",
                config.revoke_policy_name
            )));
        }
        if !is_kms_key_arn(&config.signing_key_arn) {
            return Err(Error::Config(format!(
                "AIRF_SIGNING_KEY_ARN: {:?} is not a KMS key ARN (arn:aws:kms:<region>:<account>:key/<id>; \
                 template 3's SigningKeyArn output)",
                config.signing_key_arn
            )));
        }
        if config.agent_sha256.len() != 64
            || !config.agent_sha256.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(Error::Config(
                "AIRF_AGENT_SHA256 is not a 64-digit hex SHA-256 (cat dist/airf-agent.sha256)"
                    .into(),
            ));
        }
        config.snapshot = SnapshotTask::from_lookup(optional)?;
        let interval = optional("AIRF_LOOKUP_EVENTS_INTERVAL_MS", "500");
        config.lookup_events_interval_ms = interval
            .parse()
            .ok()
            .filter(|ms| *ms <= 60_000)
            .ok_or_else(|| {
                Error::Config(format!(
                    "AIRF_LOOKUP_EVENTS_INTERVAL_MS: {interval:?} is not a number of milliseconds \
                     up to 60000 (500 keeps to LookupEvents' 2 requests a second)"
                ))
            })?;
        Ok(config)
    }

    /// Refuses accounts outside [`Config::member_accounts`] (when set).
    pub fn check_account(&self, account: &str) -> Result<()> {
        if self.member_accounts.is_empty() || self.member_accounts.iter().any(|a| a == account) {
            return Ok(());
        }
        Err(Error::bad_input(format!(
            "account {account} is not one of this deployment's member accounts (AIRF_MEMBER_ACCOUNTS)"
        )))
    }

    /// Reads the process environment.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }
}

/// `arn:<partition>:kms:<region>:<account>:key/<id>`: a key, not an alias (the statement names
/// the key that signed, and a verifier fetches that key's public half).
fn is_kms_key_arn(s: &str) -> bool {
    let parts: Vec<&str> = s.splitn(6, ':').collect();
    let [arn, partition, service, region, account, resource] = parts.as_slice() else {
        return false;
    };
    *arn == "arn"
        && partition.starts_with("aws")
        && *service == "kms"
        && crate::model::is_region(region)
        && crate::model::is_account_id(account)
        && resource.strip_prefix("key/").is_some_and(|id| {
            !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
pub(crate) fn test_config() -> Config {
    let vars = [
        (
            "AIRF_STATE_MACHINE_ARN",
            "arn:aws:states:us-east-1:111111111111:stateMachine:airf",
        ),
        (
            "AIRF_INCIDENT_TOPIC_ARN",
            "arn:aws:sns:us-east-1:111111111111:airf-incident",
        ),
        (
            "AIRF_CHAT_TOPIC_ARN",
            "arn:aws:sns:us-east-1:111111111111:airf-chat",
        ),
        ("AIRF_EVIDENCE_BUCKET", "forensics-evidence"),
        ("AIRF_EVIDENCE_REGION", "us-east-1"),
        ("AIRF_ARTIFACT_BUCKET", "forensics-artifacts"),
        ("AIRF_AGENT_VERSION", "0.1.0"),
        (
            "AIRF_SIGNING_KEY_ARN",
            "arn:aws:kms:us-east-1:111111111111:key/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
        ),
        (
            "AIRF_AGENT_SHA256",
            "9f2c000000000000000000000000000000000000000000000000000000000000",
        ),
    ];
    Config::from_lookup(|n| {
        vars.iter()
            .find(|(k, _)| *k == n)
            .map(|(_, v)| (*v).to_owned())
    })
    .expect("test config")
}

/// [`test_config`] with the snapshot task deployed.
#[cfg(test)]
pub(crate) fn test_config_with_snapshots() -> Config {
    Config {
        snapshot: Some(SnapshotTask {
            cluster_arn: "arn:aws:ecs:us-east-1:111111111111:cluster/airf".into(),
            task_definition_arn:
                "arn:aws:ecs:us-east-1:111111111111:task-definition/airf-snapshot:3".into(),
            subnet_ids: vec!["subnet-0123456789abcdef0".into()],
            security_group_id: "sg-0123456789abcdef0".into(),
            reader_role_name: "AirfSnapshotReader".into(),
        }),
        ..test_config()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "arn:aws:kms:us-east-1:111111111111:key/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";

    #[test]
    fn the_signing_key_must_be_a_key_arn() {
        assert!(is_kms_key_arn(KEY));
        assert!(is_kms_key_arn(
            "arn:aws-us-gov:kms:us-gov-west-1:111111111111:key/mrk-1234abcd"
        ));
        for bad in [
            "",
            "alias/airf-signing",
            "arn:aws:kms:us-east-1:111111111111:alias/airf-signing",
            "arn:aws:kms:us-east-1:1111:key/abc",
            "arn:aws:s3:us-east-1:111111111111:key/abc",
            "arn:aws:kms:us-east-1:111111111111:key/",
            "arn:aws:kms:us-east-1:111111111111:key/a/b",
        ] {
            assert!(!is_kms_key_arn(bad), "{bad}");
        }
        let err = Config::from_lookup(|n| match n {
            "AIRF_SIGNING_KEY_ARN" => Some("alias/airf-signing".into()),
            "AIRF_AGENT_SHA256" => Some("ab".repeat(32)),
            "AIRF_MEMBER_ACCOUNTS" => None,
            _ => Some("x".into()),
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("AIRF_SIGNING_KEY_ARN"), "{err}");
    }

    const SNAPSHOT_ENV: [(&str, &str); 4] = [
        (
            "AIRF_SNAPSHOT_CLUSTER_ARN",
            "arn:aws:ecs:us-east-1:111111111111:cluster/airf",
        ),
        (
            "AIRF_SNAPSHOT_TASK_DEFINITION_ARN",
            "arn:aws:ecs:us-east-1:111111111111:task-definition/airf-snapshot:3",
        ),
        (
            "AIRF_SNAPSHOT_SUBNET_IDS",
            "subnet-0123456789abcdef0, subnet-01234567",
        ),
        ("AIRF_SNAPSHOT_SECURITY_GROUP_ID", "sg-0123456789abcdef0"),
    ];

    fn with_snapshot_env(overrides: &[(&str, &str)]) -> Result<Option<SnapshotTask>> {
        let lookup = |n: &str| -> Option<String> {
            if let Some((_, v)) = overrides.iter().find(|(k, _)| *k == n) {
                return Some((*v).to_owned());
            }
            SNAPSHOT_ENV
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| (*v).to_owned())
        };
        SnapshotTask::from_lookup(|n, default| {
            lookup(n)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| default.to_owned())
        })
    }

    #[test]
    fn evidence_prefixes_are_plain_names() {
        for good in ["evidence", "cases/2026", "a.b_c-d/e"] {
            assert!(is_evidence_prefix(good), "{good}");
        }
        for bad in [
            "",
            "/evidence",
            "evidence/",
            "a//b",
            "a/../b",
            ".",
            "a/%2e%2e",
            "a b",
            "a\nb",
        ] {
            assert!(!is_evidence_prefix(bad), "{bad:?}");
        }
    }

    #[test]
    fn the_snapshot_task_is_all_or_nothing() {
        let task = with_snapshot_env(&[]).unwrap().unwrap();
        assert_eq!(
            task.subnet_ids,
            ["subnet-0123456789abcdef0", "subnet-01234567"]
        );
        assert_eq!(task.reader_role_name, "AirfSnapshotReader");
        let none: Vec<(&str, &str)> = SNAPSHOT_ENV.iter().map(|(k, _)| (*k, "")).collect();
        assert_eq!(with_snapshot_env(&none).unwrap(), None);
        assert_eq!(test_config().snapshot, None, "not deployed by default");
        let err = with_snapshot_env(&[("AIRF_SNAPSHOT_SECURITY_GROUP_ID", " ")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("AIRF_SNAPSHOT_SECURITY_GROUP_ID is not set")
                && err.contains("half deployed"),
            "{err}"
        );
        for (name, bad) in [
            ("AIRF_SNAPSHOT_CLUSTER_ARN", "airf"),
            (
                "AIRF_SNAPSHOT_TASK_DEFINITION_ARN",
                "arn:aws:ecs:us-east-1:111111111111:cluster/airf",
            ),
            ("AIRF_SNAPSHOT_SUBNET_IDS", "subnet-1,sg-01234567"),
            ("AIRF_SNAPSHOT_SECURITY_GROUP_ID", "sg-x"),
            ("AIRF_SNAPSHOT_READER_ROLE_NAME", "a/b"),
        ] {
            let err = with_snapshot_env(&[(name, bad)]).unwrap_err().to_string();
            assert!(err.contains(name), "{name}={bad}: {err}");
        }
    }

    #[test]
    fn missing_required_variable_is_named() {
        let err = Config::from_lookup(|_| None).unwrap_err().to_string();
        assert!(err.contains("AIRF_STATE_MACHINE_ARN is not set"), "{err}");
    }

    #[test]
    fn member_accounts_are_checked() {
        let mut c = test_config();
        assert!(
            c.check_account("999999999999").is_ok(),
            "no list: any account"
        );
        c.member_accounts = vec!["111111111111".into()];
        assert!(c.check_account("111111111111").is_ok());
        let err = c.check_account("999999999999").unwrap_err().to_string();
        assert!(
            err.contains("not one of this deployment's member accounts"),
            "{err}"
        );
    }

    #[test]
    fn defaults_fill_optional_settings() {
        let c = test_config();
        assert_eq!(c.member_role_name, "AirfControllerAccess");
        assert_eq!(c.memory_document, "airf-acquire-memory");
        assert_eq!(c.evidence_prefix, "evidence");
        assert_eq!(c.revoke_policy_name, "AirfRevokedSessions");
    }

    #[test]
    fn a_revoke_policy_name_that_could_change_the_arn_is_refused() {
        let err = Config::from_lookup(|n| match n {
            "AIRF_REVOKE_POLICY_NAME" => Some("x/../Admin".into()),
            "AIRF_MEMBER_ACCOUNTS" => None,
            "AIRF_AGENT_SHA256" => Some("ab".repeat(32)),
            "AIRF_SIGNING_KEY_ARN" => Some(KEY.into()),
            _ => Some("x".into()),
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("AIRF_REVOKE_POLICY_NAME"), "{err}");
    }

    #[test]
    fn bad_agent_hash_is_refused() {
        let err = Config::from_lookup(|n| match n {
            "AIRF_AGENT_SHA256" => Some("abc".into()),
            "AIRF_SIGNING_KEY_ARN" => Some(KEY.into()),
            "AIRF_MEMBER_ACCOUNTS" => None,
            _ => Some("x".into()),
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("AIRF_AGENT_SHA256"), "{err}");
    }

    #[test]
    fn the_lookup_events_interval_is_milliseconds_up_to_a_minute() {
        assert_eq!(test_config().lookup_events_interval_ms, 500);
        let with = |v: &str| {
            let v = v.to_owned();
            Config::from_lookup(move |n| match n {
                "AIRF_LOOKUP_EVENTS_INTERVAL_MS" => Some(v.clone()),
                "AIRF_SIGNING_KEY_ARN" => Some(KEY.into()),
                "AIRF_AGENT_SHA256" => Some("ab".repeat(32)),
                "AIRF_MEMBER_ACCOUNTS" | "AIRF_REVOKE_POLICY_NAME" | "AIRF_EVIDENCE_PREFIX" => None,
                n if n.starts_with("AIRF_SNAPSHOT") => None,
                _ => Some("x".into()),
            })
        };
        assert_eq!(with("1000").unwrap().lookup_events_interval_ms, 1000);
        for bad in ["60001", "-1", "0.5", "fast"] {
            let err = with(bad).unwrap_err().to_string();
            assert!(
                err.contains("AIRF_LOOKUP_EVENTS_INTERVAL_MS"),
                "{bad}: {err}"
            );
        }
    }
}
