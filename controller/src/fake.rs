//! An in-memory [`Cloud`] for unit tests: instances, tags, groups, profiles, snapshots and a log
//! of every call, so tests assert both the end state and that nothing else was touched.

use crate::cloud::{
    Cloud, Invocation, NewVersion, PolicyVersion, ProtectionKind, Started, SubnetRoutes,
    TargetRegistration,
};
use crate::cloud::{ControlPlaneAnswer, ControlPlaneCall};
use crate::cloud::{
    HttpsEgress, IngressRule, InstanceNetwork, Protection, RouteTable, VpcEndpoint,
};
use crate::cloud::{KmsSignature, ObjectHead, PutNew, StoredObject};
use crate::error::{Error, Result};
use crate::model::{InstanceFacts, InstanceState, Interface, ProfileAssociation, Target, Volume};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Mutex;

/// The names template 4 gives airf's member-account IAM resources (its parameter defaults;
/// `names_are_template_4s` checks them against the template).
pub mod names {
    /// MemberRoleName: the role the controller assumes.
    pub const MEMBER_ROLE: &str = "AirfControllerAccess";
    /// AcquisitionRoleName.
    pub const ACQUISITION_ROLE: &str = "AirfAcquisitionInstanceRole";
    /// AcquisitionProfileName.
    pub const ACQUISITION_PROFILE: &str = "AirfAcquisitionInstanceProfile";
    /// IsolationRoleName.
    pub const ISOLATION_ROLE: &str = "AirfIsolatedInstanceRole";
    /// IsolationProfileName.
    pub const ISOLATION_PROFILE: &str = "AirfIsolatedInstanceProfile";
    /// ForwarderRoleName.
    pub const FORWARDER_ROLE: &str = "AirfEventForwarder";
    /// RevokedSessionsPolicyName.
    pub const REVOKE_POLICY: &str = "AirfRevokedSessions";
}

/// The version id every fake S3 object has.
pub const FAKE_VERSION: &str = "v-fake-1";

/// The controller's own principal, as GetCallerIdentity names the Lambda's session.
pub const CONTROLLER_SESSION: &str =
    "arn:aws:sts::222222222222:assumed-role/airf-controller/airf-controller";

/// The revocation boundary's document as template 4 creates it.
pub const BOUNDARY_V1: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;

/// IAM's quota for a managed policy document, characters other than whitespace.
const POLICY_SIZE_QUOTA: usize = 6_144;

/// One version of a managed policy.
#[derive(Debug, Clone)]
pub struct FakeVersion {
    /// `v1`, `v2`, …
    pub id: String,
    /// The document as it was sent.
    pub document: String,
    /// Whether it is the default version.
    pub is_default: bool,
    /// Creation time, Unix seconds.
    pub created: i64,
}

/// A customer-managed policy: its versions, oldest first, and the next version number.
#[derive(Debug, Clone, Default)]
pub struct FakePolicy {
    /// Versions, oldest first.
    pub versions: Vec<FakeVersion>,
    /// Number of the next version (IAM never reuses one).
    pub next: u64,
}

impl FakePolicy {
    /// The default version's document.
    pub fn default_document(&self) -> Option<&str> {
        self.versions
            .iter()
            .find(|v| v.is_default)
            .map(|v| v.document.as_str())
    }
}

/// [`facts`]' instance as a workflow step's subject, claim 1.
pub fn subject(instance_id: &str) -> crate::model::Subject {
    crate::model::Subject {
        target: facts(instance_id).target,
        claim: 1,
    }
}

/// The test configuration with the evidence in [`facts`]' region (eu-west-1), so acquisition
/// needs no way out of the region.
pub fn same_region_config() -> crate::config::Config {
    let mut c = crate::config::test_config();
    c.evidence_region = "eu-west-1".into();
    c
}

/// A running instance with one interface and one root volume, in 111111111111/eu-west-1.
pub fn facts(instance_id: &str) -> InstanceFacts {
    InstanceFacts {
        target: Target {
            instance_id: instance_id.into(),
            account: "111111111111".into(),
            region: "eu-west-1".into(),
        },
        state: InstanceState::Running,
        tags: BTreeMap::new(),
        vpc_id: Some("vpc-1".into()),
        interfaces: vec![Interface {
            id: "eni-1".into(),
            groups: vec!["sg-web".into()],
        }],
        volumes: vec![Volume {
            id: "vol-1".into(),
            device: "/dev/xvda".into(),
            delete_on_termination: true,
        }],
        profile: None,
    }
}

/// EC2's answer to ModifyInstanceAttribute for a protection on a Spot instance: the code
/// `UnsupportedOperation` with this message (as EC2 words it for `disableApiTermination`; stop
/// protection is refused the same way), not retryable.
pub fn spot_refusal(protection: ProtectionKind) -> Error {
    Error::Aws {
        operation: "ec2:ModifyInstanceAttribute",
        message: format!(
            "service error: UnsupportedOperation: Modifying '{}' is not supported for spot instances.",
            protection.attribute()
        ),
        retryable: false,
    }
}

/// A step's output as GetCommandInvocation returns it: the first `limit` characters, cut with the
/// SSM Agent's suffix (amazon-ssm-agent `pluginutil.StringPrefix`).
pub fn ssm_prefix(text: &str, limit: usize) -> String {
    const SUFFIX: &str = "--output truncated--";
    if text.len() < limit {
        return text.to_owned();
    }
    let mut end = limit - SUFFIX.len();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{SUFFIX}", &text[..end])
}

/// The error a service sends for the call logged as `line`: when `retryable`, its throttling
/// answer (EC2 `RequestLimitExceeded`, SSM `ThrottlingException`, IAM and the others
/// `Throttling`), else its AccessDenied; in the words `aws_err` reports.
pub fn injected(line: &str, retryable: bool) -> Error {
    let action = line.split(' ').next().unwrap_or(line);
    let (service, throttled, denied) = match action {
        "SendCommand" => (
            "ssm",
            "ThrottlingException: Rate exceeded",
            "AccessDeniedException",
        ),
        "PutRolePolicy" => ("iam", "Throttling: Rate exceeded", "AccessDenied"),
        "DetachInstances" => ("autoscaling", "Throttling: Rate exceeded", "AccessDenied"),
        "DeregisterTargets" => (
            "elasticloadbalancing",
            "Throttling: Rate exceeded",
            "AccessDenied",
        ),
        "StartExecution" => (
            "states",
            "ThrottlingException: Rate exceeded",
            "AccessDeniedException",
        ),
        "Publish" => ("sns", "Throttling: Rate exceeded", "AuthorizationError"),
        // S3's 503 and 403, as the SDK shows them.
        "GetObject" | "PutObject" => (
            "s3",
            "SlowDown: Please reduce your request rate.",
            "AccessDenied: Access Denied",
        ),
        _ => (
            "ec2",
            "RequestLimitExceeded: Request limit exceeded.",
            "UnauthorizedOperation",
        ),
    };
    Error::Aws {
        operation: "fake",
        message: if retryable {
            format!("service error: {throttled} ({service}:{action})")
        } else {
            format!(
                "service error: {denied}: not authorized to perform {service}:{action} ({line})"
            )
        },
        retryable,
    }
}

/// Recorded state.
#[derive(Debug, Default)]
pub struct State {
    /// Instances by id.
    pub instances: BTreeMap<String, InstanceFacts>,
    /// Every call, in order, as `Operation detail`.
    pub calls: Vec<String>,
    /// Security groups: (vpc, name) → id.
    pub groups: BTreeMap<(String, String), String>,
    /// Started executions: name → input.
    pub executions: BTreeMap<String, String>,
    /// Executions that have ended: Step Functions refuses their names (`ExecutionAlreadyExists`)
    /// whatever the input, for 90 days.
    pub finished: Vec<String>,
    /// Published messages: (topic, subject, message).
    pub published: Vec<(String, String, String)>,
    /// Whether SSM sees instances.
    pub ssm_online: bool,
    /// S3 objects.
    pub objects: BTreeMap<(String, String), Vec<u8>>,
    /// Writers racing the controller: when a conditional PutObject names the first key here,
    /// these bytes are stored there first (another writer won), once each.
    pub racing_puts: VecDeque<(String, Vec<u8>)>,
    /// Messages signed: (key id, message).
    pub signed: Vec<(String, Vec<u8>)>,
    /// Snapshots: (volume, snapshot).
    pub snapshots: Vec<(String, String)>,
    /// Instances with both protections on, set by a test (`protect` records each flag in
    /// `net.protection`).
    pub protected: Vec<String>,
    /// Spot instances: EC2 refuses their protections, as [`spot_refusal`] words it.
    pub spot: Vec<String>,
    /// Reads of the member account (DescribeInstances), which [`State::calls`] leaves out; on
    /// AWS each is made with the member role, so it needs an STS AssumeRole first.
    pub reads: Vec<String>,
    /// Instance profiles → their role names; a profile not listed holds `<profile>Role`.
    pub profiles: BTreeMap<String, Vec<String>>,
    /// Roles' permissions boundaries (role name → policy ARN); a role not listed has none.
    pub boundaries: BTreeMap<String, String>,
    /// airf's own roles, which the member role may never change (template 4's
    /// `NeverChangeAirfRoles` Deny).
    pub airf_roles: BTreeSet<String>,
    /// Customer-managed policies by ARN.
    pub policies: BTreeMap<String, FakePolicy>,
    /// How many times each IAM call yields to other tasks first, front first (then none): so
    /// concurrent containments interleave at every IAM call as a test chooses.
    pub iam_yields: VecDeque<u8>,
    /// Clock of policy version creation, Unix seconds.
    pub clock: i64,
    /// Next GetCommandInvocation answer (for any step not in `step_invocations`), with stdout
    /// and stderr as the step wrote them: the fake cuts them as SSM does.
    pub invocation: Option<Invocation>,
    /// GetCommandInvocation answers for one step (plugin) by name, e.g. `DownloadAgent`.
    pub step_invocations: BTreeMap<String, Invocation>,
    /// The route table of every instance's subnet; None: in no subnet (the check is skipped).
    pub subnet_routes: Option<SubnetRoutes>,
    /// Fail the first call whose log line starts with this, once.
    pub fail_on: Option<(String, bool)>,
    /// Contain-first isolation and release (section at the end of this file).
    pub net: NetState,
    /// Control-plane answers by call; a call not listed is refused `UnauthorizedOperation`.
    pub control_plane: BTreeMap<ControlPlaneCall, ControlPlaneAnswer>,
}

/// The fake.
#[derive(Debug, Default)]
pub struct FakeCloud {
    /// Its state.
    pub state: Mutex<State>,
}

impl FakeCloud {
    /// A cloud holding one instance, in a member account deployed as template 4 deploys it.
    pub fn with(instance: InstanceFacts) -> Self {
        let cloud = FakeCloud::default();
        cloud.deploy_member_account(&instance.target.account);
        cloud
            .lock()
            .instances
            .insert(instance.target.instance_id.clone(), instance);
        cloud
    }

    /// What template 4 creates in `account`: the airf roles and profiles, the revocation
    /// boundary (v1, `Allow *`) set as the acquisition role's boundary, and a workload profile
    /// `WebServer` whose role `WebServerRole` has no boundary.
    pub fn deploy_member_account(&self, account: &str) {
        use names::*;
        let policy = format!("arn:aws:iam::{account}:policy/{REVOKE_POLICY}");
        let mut s = self.lock();
        s.clock = 1_795_975_200; // 2026-11-29T18:00:00Z
        for (profile, role) in [
            (ACQUISITION_PROFILE, ACQUISITION_ROLE),
            (ISOLATION_PROFILE, ISOLATION_ROLE),
            ("WebServer", "WebServerRole"),
        ] {
            s.profiles.insert(profile.into(), vec![role.into()]);
        }
        s.airf_roles = [
            MEMBER_ROLE,
            ACQUISITION_ROLE,
            ISOLATION_ROLE,
            FORWARDER_ROLE,
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        s.boundaries.insert(ACQUISITION_ROLE.into(), policy.clone());
        let created = s.clock - 86_400;
        s.policies.insert(
            policy,
            FakePolicy {
                versions: vec![FakeVersion {
                    id: "v1".into(),
                    document: BOUNDARY_V1.into(),
                    is_default: true,
                    created,
                }],
                next: 2,
            },
        );
    }

    /// Yields as `iam_yields` says, then logs the call (which may fail as `fail_on` says).
    async fn iam_call(&self, line: String) -> Result<()> {
        let n = self.lock().iam_yields.pop_front().unwrap_or(0);
        for _ in 0..n {
            tokio::task::yield_now().await;
        }
        self.call(line)
    }

    /// The state, locked.
    pub fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    fn call(&self, line: String) -> Result<()> {
        let mut s = self.lock();
        if let Some((prefix, retryable)) = s.fail_on.clone()
            && line.starts_with(&prefix)
        {
            s.fail_on = None;
            return Err(injected(&line, retryable));
        }
        s.calls.push(line);
        Ok(())
    }

    fn with_instance<T>(
        &self,
        target: &Target,
        f: impl FnOnce(&mut InstanceFacts) -> T,
    ) -> Result<T> {
        let mut s = self.lock();
        let inst = s
            .instances
            .get_mut(&target.instance_id)
            .ok_or_else(|| Error::Aws {
                operation: "fake",
                message: "InvalidInstanceID.NotFound".into(),
                retryable: false,
            })?;
        Ok(f(inst))
    }
}

impl Cloud for FakeCloud {
    async fn describe_instance(&self, target: &Target) -> Result<Option<InstanceFacts>> {
        let mut s = self.lock();
        s.reads
            .push(format!("DescribeInstances {}", target.instance_id));
        Ok(s.instances
            .get(&target.instance_id)
            .filter(|i| i.target == *target)
            .cloned())
    }
    async fn tag_instance(&self, target: &Target, tags: &BTreeMap<String, String>) -> Result<()> {
        self.call(format!("CreateTags {} {tags:?}", target.instance_id))?;
        self.with_instance(target, |i| i.tags.extend(tags.clone()))
    }
    async fn associate_profile(&self, target: &Target, profile_name: &str) -> Result<()> {
        self.call(format!(
            "AssociateIamInstanceProfile {} {profile_name}",
            target.instance_id
        ))?;
        self.with_instance(target, |i| {
            i.profile = Some(ProfileAssociation {
                association_id: "iip-assoc-fake".into(),
                profile_arn: format!(
                    "arn:aws:iam::{}:instance-profile/{profile_name}",
                    target.account
                ),
            });
        })
    }
    async fn replace_profile(
        &self,
        target: &Target,
        association_id: &str,
        profile_name: &str,
    ) -> Result<()> {
        self.call(format!(
            "ReplaceIamInstanceProfileAssociation {association_id} {profile_name}"
        ))?;
        self.with_instance(target, |i| {
            i.profile = Some(ProfileAssociation {
                association_id: association_id.into(),
                profile_arn: format!(
                    "arn:aws:iam::{}:instance-profile/{profile_name}",
                    target.account
                ),
            });
        })
    }
    async fn ssm_online(&self, _target: &Target) -> Result<bool> {
        Ok(self.lock().ssm_online)
    }
    async fn send_command(
        &self,
        target: &Target,
        document: &str,
        parameters: &BTreeMap<String, Vec<String>>,
        _timeout: i32,
        _comment: &str,
    ) -> Result<String> {
        self.call(format!(
            "SendCommand {} {document} {parameters:?}",
            target.instance_id
        ))?;
        Ok(format!("cmd-{document}"))
    }
    async fn command_invocation(
        &self,
        _target: &Target,
        command_id: &str,
        plugin: &str,
    ) -> Result<Invocation> {
        let s = self.lock();
        let ran = Invocation {
            status: "Success".into(),
            stdout: String::new(),
            stderr: String::new(),
        };
        let answer = match (s.step_invocations.get(plugin), s.invocation.as_ref()) {
            (Some(step), _) => step,
            // The shell step has an answer, so the download steps before it ran.
            (None, Some(_)) if plugin.starts_with("Download") => &ran,
            (None, Some(main)) => main,
            (None, None) => {
                return Err(Error::failed(format!("no invocation for {command_id}")));
            }
        };
        Ok(Invocation {
            status: answer.status.clone(),
            stdout: ssm_prefix(&answer.stdout, 24_000),
            stderr: ssm_prefix(&answer.stderr, 8_000),
        })
    }
    async fn ensure_security_group(
        &self,
        target: &Target,
        vpc_id: &str,
        name: &str,
        allow_all: bool,
    ) -> Result<String> {
        let key = (vpc_id.to_owned(), name.to_owned());
        if let Some(id) = self.lock().groups.get(&key) {
            return Ok(id.clone());
        }
        self.call(format!(
            "CreateSecurityGroup {vpc_id} {name} allow_all={allow_all} ({})",
            target.instance_id
        ))?;
        let id = format!("sg-{name}");
        self.lock().groups.insert(key, id.clone());
        Ok(id)
    }
    async fn set_interface_groups(
        &self,
        target: &Target,
        interface_id: &str,
        groups: &[String],
    ) -> Result<()> {
        self.call(format!(
            "ModifyNetworkInterfaceAttribute {interface_id} {groups:?}"
        ))?;
        self.with_instance(target, |i| {
            for eni in i.interfaces.iter_mut().filter(|e| e.id == interface_id) {
                eni.groups = groups.to_vec();
            }
        })
    }
    async fn protect(&self, target: &Target, protection: ProtectionKind) -> Result<()> {
        self.call(format!(
            "ModifyInstanceAttribute {} {}",
            target.instance_id,
            protection.attribute()
        ))?;
        let mut s = self.lock();
        if s.spot.contains(&target.instance_id) {
            return Err(spot_refusal(protection));
        }
        let flags = s
            .net
            .protection
            .entry(target.instance_id.clone())
            .or_insert(Protection {
                termination: false,
                stop: false,
            });
        match protection {
            ProtectionKind::Termination => flags.termination = true,
            ProtectionKind::Stop => flags.stop = true,
        }
        Ok(())
    }
    async fn keep_volumes(&self, target: &Target, devices: &[String]) -> Result<()> {
        self.call(format!(
            "ModifyInstanceAttribute {} keep {devices:?}",
            target.instance_id
        ))?;
        self.with_instance(target, |i| {
            for v in i.volumes.iter_mut().filter(|v| devices.contains(&v.device)) {
                v.delete_on_termination = false;
            }
        })
    }
    async fn case_snapshots(
        &self,
        _target: &Target,
        _case_id: &str,
    ) -> Result<Vec<(String, String)>> {
        Ok(self.lock().snapshots.clone())
    }
    async fn snapshot(
        &self,
        _target: &Target,
        volume_id: &str,
        _description: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<String> {
        self.call(format!("CreateSnapshot {volume_id} {tags:?}"))?;
        let id = format!("snap-{volume_id}");
        self.lock()
            .snapshots
            .push((volume_id.to_owned(), id.clone()));
        Ok(id)
    }
    async fn profile_roles(&self, _target: &Target, profile_name: &str) -> Result<Vec<String>> {
        Ok(self
            .lock()
            .profiles
            .get(profile_name)
            .cloned()
            .unwrap_or_else(|| vec![format!("{profile_name}Role")]))
    }
    async fn role_boundary(&self, _target: &Target, role_name: &str) -> Result<Option<String>> {
        self.iam_call(format!("GetRole {role_name}")).await?;
        Ok(self.lock().boundaries.get(role_name).cloned())
    }
    async fn put_role_boundary(
        &self,
        target: &Target,
        role_name: &str,
        policy_arn: &str,
    ) -> Result<()> {
        self.iam_call(format!(
            "PutRolePermissionsBoundary {role_name} {policy_arn}"
        ))
        .await?;
        let mut s = self.lock();
        // Template 4: NeverChangeAirfRoles denies it on airf's roles; the Allow holds only with
        // iam:PermissionsBoundary = the revocation boundary.
        let ours = format!(
            "arn:aws:iam::{}:policy/{}",
            target.account,
            names::REVOKE_POLICY
        );
        if s.airf_roles.contains(role_name) {
            return Err(access_denied(
                target,
                "iam:PutRolePermissionsBoundary",
                &format!("role {role_name}"),
                "with an explicit deny in an identity-based policy",
            ));
        }
        if policy_arn != ours {
            return Err(access_denied(
                target,
                "iam:PutRolePermissionsBoundary",
                &format!("role {role_name}"),
                "because no identity-based policy allows the iam:PutRolePermissionsBoundary action",
            ));
        }
        s.boundaries.insert(role_name.into(), policy_arn.into());
        Ok(())
    }
    async fn policy_versions(
        &self,
        _target: &Target,
        policy_arn: &str,
    ) -> Result<Vec<PolicyVersion>> {
        self.iam_call(format!("ListPolicyVersions {policy_arn}"))
            .await?;
        let s = self.lock();
        let policy = s.policy(policy_arn)?;
        Ok(policy
            .versions
            .iter()
            .map(|v| PolicyVersion {
                id: v.id.clone(),
                is_default: v.is_default,
                created: v.created,
            })
            .collect())
    }
    async fn policy_version_document(
        &self,
        _target: &Target,
        policy_arn: &str,
        version_id: &str,
    ) -> Result<Option<String>> {
        self.iam_call(format!("GetPolicyVersion {policy_arn} {version_id}"))
            .await?;
        let s = self.lock();
        let policy = s.policy(policy_arn)?;
        Ok(policy
            .versions
            .iter()
            .find(|v| v.id == version_id)
            .map(|v| v.document.clone()))
    }
    async fn create_policy_version(
        &self,
        _target: &Target,
        policy_arn: &str,
        document: &str,
    ) -> Result<NewVersion> {
        self.iam_call(format!("CreatePolicyVersion {policy_arn}"))
            .await?;
        let mut s = self.lock();
        let clock = s.clock;
        let policy = s.policy_mut(policy_arn)?;
        // IAM's LimitExceeded messages, as IAM words them (seen in 99designs/iamy#21 and
        // ministryofjustice/cloud-platform-environments#14473).
        if policy.versions.len() >= 5 {
            return Ok(NewVersion::LimitExceeded(
                "LimitExceeded: A managed policy can have up to 5 versions. Before you create a \
                 new version, you must delete an existing version."
                    .into(),
            ));
        }
        if document.chars().filter(|c| !c.is_whitespace()).count() > POLICY_SIZE_QUOTA {
            return Ok(NewVersion::LimitExceeded(format!(
                "LimitExceeded: Cannot exceed quota for PolicySize: {POLICY_SIZE_QUOTA}"
            )));
        }
        if serde_json::from_str::<serde_json::Value>(document).is_err() {
            return Err(Error::Aws {
                operation: "iam:CreatePolicyVersion",
                message: "MalformedPolicyDocument: Syntax errors in policy.".into(),
                retryable: false,
            });
        }
        let id = format!("v{}", policy.next);
        policy.next += 1;
        for v in &mut policy.versions {
            v.is_default = false;
        }
        policy.versions.push(FakeVersion {
            id: id.clone(),
            document: document.into(),
            is_default: true,
            created: clock,
        });
        Ok(NewVersion::Created(id))
    }
    async fn delete_policy_version(
        &self,
        _target: &Target,
        policy_arn: &str,
        version_id: &str,
    ) -> Result<()> {
        self.iam_call(format!("DeletePolicyVersion {policy_arn} {version_id}"))
            .await?;
        let mut s = self.lock();
        let policy = s.policy_mut(policy_arn)?;
        if policy
            .versions
            .iter()
            .any(|v| v.id == version_id && v.is_default)
        {
            return Err(Error::Aws {
                operation: "iam:DeletePolicyVersion",
                message: "DeleteConflict: Cannot delete the default version of a policy.".into(),
                retryable: false,
            });
        }
        policy.versions.retain(|v| v.id != version_id);
        Ok(())
    }
    async fn subnet_routes(&self, target: &Target) -> Result<Option<SubnetRoutes>> {
        let mut s = self.lock();
        s.reads
            .push(format!("DescribeRouteTables {}", target.instance_id));
        Ok(s.subnet_routes.clone())
    }
    async fn auto_scaling_group(&self, target: &Target) -> Result<Option<String>> {
        Ok(self
            .lock()
            .instances
            .get(&target.instance_id)
            .and_then(|i| i.tags.get("aws:autoscaling:groupName").cloned()))
    }
    async fn detach_from_auto_scaling_group(&self, target: &Target, group: &str) -> Result<()> {
        self.call(format!("DetachInstances {group} {}", target.instance_id))?;
        // AWS removes the group's tag from a detached instance.
        self.with_instance(target, |i| {
            i.tags.remove("aws:autoscaling:groupName");
        })
    }
    async fn target_registrations(&self, _target: &Target) -> Result<Vec<TargetRegistration>> {
        Ok(self.lock().net.registrations.clone())
    }
    async fn deregister(&self, target: &Target, registration: &TargetRegistration) -> Result<()> {
        self.call(format!(
            "DeregisterTargets {} {}",
            registration.target_group_arn, target.instance_id
        ))?;
        self.lock().net.registrations.retain(|r| r != registration);
        Ok(())
    }
    async fn start_execution(&self, _arn: &str, name: &str, input: &str) -> Result<Started> {
        self.call(format!("StartExecution {name}"))?;
        let mut s = self.lock();
        match s.executions.get(name) {
            Some(_) if s.finished.iter().any(|f| f == name) => Ok(Started::AlreadyExists),
            Some(existing) if existing == input => {
                Ok(Started::Execution(format!("arn:execution:{name}")))
            }
            Some(_) => Ok(Started::AlreadyExists),
            None => {
                s.executions.insert(name.to_owned(), input.to_owned());
                Ok(Started::Execution(format!("arn:execution:{name}")))
            }
        }
    }
    async fn publish(&self, topic_arn: &str, subject: &str, message: &str) -> Result<()> {
        self.call(format!("Publish {topic_arn}"))?;
        self.lock()
            .published
            .push((topic_arn.into(), subject.into(), message.into()));
        Ok(())
    }
    async fn get_object(&self, bucket: &str, key: &str) -> Result<Option<StoredObject>> {
        self.get_object_up_to(bucket, key, crate::cloud::MAX_MANIFEST_BYTES)
            .await
    }
    async fn get_object_up_to(
        &self,
        bucket: &str,
        key: &str,
        max_bytes: u64,
    ) -> Result<Option<StoredObject>> {
        // Reads are not logged in `calls` (tests compare those with what changed), but they
        // fail as `fail_on` says, with S3's answers.
        let line = format!("GetObject s3://{bucket}/{key}");
        {
            let mut s = self.lock();
            if let Some((prefix, retryable)) = s.fail_on.clone()
                && line.starts_with(&prefix)
            {
                s.fail_on = None;
                return Err(injected(&line, retryable));
            }
        }
        let s = self.lock();
        let Some(bytes) = s.objects.get(&(bucket.to_owned(), key.to_owned())) else {
            return Ok(None);
        };
        if bytes.len() as u64 > max_bytes {
            return Err(Error::failed(format!(
                "s3://{bucket}/{key} is {} bytes, more than the {max_bytes} such an object can be",
                bytes.len()
            )));
        }
        Ok(Some(StoredObject {
            bytes: bytes.clone(),
            version_id: Some(FAKE_VERSION.into()),
        }))
    }
    async fn head_object(&self, bucket: &str, key: &str) -> Result<Option<ObjectHead>> {
        Ok(self
            .lock()
            .objects
            .get(&(bucket.to_owned(), key.to_owned()))
            .map(|o| ObjectHead {
                size: o.len() as u64,
                version_id: Some(FAKE_VERSION.into()),
            }))
    }
    async fn put_new_object(
        &self,
        bucket: &str,
        key: &str,
        body: &[u8],
        content_type: &str,
        kms_key_id: &str,
    ) -> Result<PutNew> {
        self.call(format!(
            "PutObject s3://{bucket}/{key} if-none-match=* type={content_type} sse-kms={kms_key_id}"
        ))?;
        let mut s = self.lock();
        if s.racing_puts.front().is_some_and(|(k, _)| k == key)
            && let Some((k, bytes)) = s.racing_puts.pop_front()
        {
            s.objects.insert((bucket.to_owned(), k), bytes);
        }
        let slot = (bucket.to_owned(), key.to_owned());
        if s.objects.contains_key(&slot) {
            return Ok(PutNew::Exists);
        }
        s.objects.insert(slot, body.to_vec());
        Ok(PutNew::Created)
    }
    async fn list_keys(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
    ) -> Result<Vec<String>> {
        self.call(format!(
            "ListObjectsV2 s3://{bucket}/{prefix} after {}",
            start_after.unwrap_or("-")
        ))?;
        Ok(self
            .lock()
            .objects
            .keys()
            .filter(|(b, k)| {
                b == bucket && k.starts_with(prefix) && start_after.is_none_or(|a| k.as_str() > a)
            })
            .map(|(_, k)| k.clone())
            .collect())
    }
    async fn sign(&self, key_id: &str, message: &[u8]) -> Result<KmsSignature> {
        use sha2::{Digest, Sha256};
        self.call(format!("Sign {key_id}"))?;
        self.lock().signed.push((key_id.into(), message.to_vec()));
        // Not ECDSA: a stand-in that differs for every key and message.
        let mut h = Sha256::new();
        h.update(key_id.as_bytes());
        h.update(message);
        Ok(KmsSignature {
            key_id: key_id.into(),
            der: h.finalize().to_vec(),
        })
    }
    async fn caller_arn(&self) -> Result<String> {
        Ok(CONTROLLER_SESSION.into())
    }
    // ---------------------------------- contain-first isolation and release (NetState below)
    async fn instance_network(&self, target: &Target) -> Result<InstanceNetwork> {
        Ok(self
            .lock()
            .net
            .network
            .get(&target.instance_id)
            .cloned()
            .unwrap_or_else(|| InstanceNetwork {
                subnet_id: "subnet-1".into(),
                private_ip: Some("10.0.1.10".into()),
            }))
    }
    async fn vpc_endpoints(&self, _target: &Target, _vpc_id: &str) -> Result<Vec<VpcEndpoint>> {
        Ok(self.lock().net.endpoints.clone())
    }
    async fn subnet_route_table(
        &self,
        _target: &Target,
        _vpc_id: &str,
        subnet_id: &str,
    ) -> Result<Option<RouteTable>> {
        Ok(self.lock().net.route_tables.get(subnet_id).cloned())
    }
    async fn group_ingress(
        &self,
        _target: &Target,
        group_ids: &[String],
    ) -> Result<Vec<IngressRule>> {
        Ok(self
            .lock()
            .net
            .ingress
            .iter()
            .filter(|r| group_ids.contains(&r.group_id))
            .cloned()
            .collect())
    }
    async fn security_group_id(
        &self,
        _target: &Target,
        vpc_id: &str,
        name: &str,
    ) -> Result<Option<String>> {
        Ok(self
            .lock()
            .groups
            .get(&(vpc_id.to_owned(), name.to_owned()))
            .cloned())
    }
    async fn ensure_https_egress_group(
        &self,
        target: &Target,
        vpc_id: &str,
        name: &str,
        egress: &[HttpsEgress],
    ) -> Result<String> {
        let key = (vpc_id.to_owned(), name.to_owned());
        let existing = self.lock().groups.get(&key).cloned();
        let id = match existing {
            Some(id) => id,
            None => {
                self.call(format!(
                    "CreateSecurityGroup {vpc_id} {name} egress ({})",
                    target.instance_id
                ))?;
                let id = format!("sg-{name}");
                self.lock().groups.insert(key, id.clone());
                id
            }
        };
        let mut s = self.lock();
        if s.net.egress_rules.get(&id).map(Vec::as_slice) != Some(egress) {
            s.calls.push(format!("SetEgress {id} {egress:?}"));
            s.net.egress_rules.insert(id.clone(), egress.to_vec());
        }
        Ok(id)
    }
    async fn protection(&self, target: &Target) -> Result<Protection> {
        let s = self.lock();
        if s.protected.contains(&target.instance_id) {
            return Ok(Protection {
                termination: true,
                stop: true,
            });
        }
        Ok(s.net
            .protection
            .get(&target.instance_id)
            .copied()
            .unwrap_or(Protection {
                termination: false,
                stop: false,
            }))
    }
    async fn set_protection(&self, target: &Target, protection: Protection) -> Result<()> {
        self.call(format!(
            "ModifyInstanceAttribute {} protection {protection:?}",
            target.instance_id
        ))?;
        let mut s = self.lock();
        s.protected.retain(|i| *i != target.instance_id);
        s.net
            .protection
            .insert(target.instance_id.clone(), protection);
        Ok(())
    }
    async fn disassociate_profile(&self, target: &Target, association_id: &str) -> Result<()> {
        self.call(format!("DisassociateIamInstanceProfile {association_id}"))?;
        self.with_instance(target, |i| i.profile = None)
    }
    async fn untag_instance(&self, target: &Target, keys: &[String]) -> Result<()> {
        self.call(format!("DeleteTags {} {keys:?}", target.instance_id))?;
        self.with_instance(target, |i| i.tags.retain(|k, _| !keys.contains(k)))
    }
    async fn attach_to_auto_scaling_group(&self, target: &Target, group: &str) -> Result<()> {
        self.call(format!("AttachInstances {group} {}", target.instance_id))?;
        self.with_instance(target, |i| {
            i.tags
                .insert("aws:autoscaling:groupName".into(), group.into());
        })
    }
    async fn register(&self, target: &Target, registration: &TargetRegistration) -> Result<()> {
        self.call(format!(
            "RegisterTargets {} {} {:?}",
            registration.target_group_arn, target.instance_id, registration.port
        ))?;
        let mut s = self.lock();
        if !s.net.registrations.contains(registration) {
            s.net.registrations.push(registration.clone());
        }
        Ok(())
    }
    async fn running_commands(&self, _target: &Target) -> Result<Vec<(String, String)>> {
        Ok(self.lock().net.running.clone())
    }
    async fn control_plane(
        &self,
        target: &Target,
        call: &ControlPlaneCall,
    ) -> Result<ControlPlaneAnswer> {
        let mut s = self.lock();
        let line = format!(
            "{} {} {}",
            call.operation(),
            target.instance_id,
            call.parameters()
        );
        if let Some((prefix, retryable)) = s.fail_on.clone()
            && line.starts_with(&prefix)
        {
            s.fail_on = None;
            return Err(injected(&line, retryable));
        }
        s.reads.push(line);
        Ok(s.control_plane
            .get(call)
            .cloned()
            .unwrap_or_else(|| ControlPlaneAnswer::Refused {
                code: "UnauthorizedOperation".into(),
                message: format!("You are not authorized to perform: {}", call.operation()),
            }))
    }
}

// ------------------------------------------------------- contain-first isolation and release

/// The fake's VPC and restore-related state (isolate.rs, release.rs).
#[derive(Debug, Default)]
pub struct NetState {
    /// Primary interface of each instance; default subnet-1, 10.0.1.10.
    pub network: BTreeMap<String, InstanceNetwork>,
    /// The VPC's endpoints.
    pub endpoints: Vec<VpcEndpoint>,
    /// Route table of each subnet.
    pub route_tables: BTreeMap<String, RouteTable>,
    /// Inbound rules of the endpoints' groups.
    pub ingress: Vec<IngressRule>,
    /// Outbound rules of the groups made by `ensure_https_egress_group`.
    pub egress_rules: BTreeMap<String, Vec<HttpsEgress>>,
    /// Protection flags, set by `protect` (one per call) and `set_protection`.
    pub protection: BTreeMap<String, Protection>,
    /// Unfinished commands: (command id, document).
    pub running: Vec<(String, String)>,
    /// The instance's target-group registrations.
    pub registrations: Vec<TargetRegistration>,
}

/// A VPC with what contain-first needs in eu-west-1: the three SSM interface endpoints (group
/// sg-endpoints, admitting HTTPS from 10.0.0.0/16) and an S3 gateway endpoint routed in
/// subnet-1's table to pl-s3.
pub fn endpoint_vpc() -> NetState {
    use crate::cloud::{EndpointKind, PrefixListRoute};
    let interface = |service: &str| VpcEndpoint {
        id: format!("vpce-{service}"),
        service_name: format!("com.amazonaws.eu-west-1.{service}"),
        kind: EndpointKind::Interface,
        available: true,
        private_dns: true,
        security_groups: vec!["sg-endpoints".into()],
        route_tables: Vec::new(),
        policy: None,
    };
    NetState {
        endpoints: vec![
            interface("ssm"),
            interface("ssmmessages"),
            interface("ec2messages"),
            VpcEndpoint {
                id: "vpce-s3".into(),
                service_name: "com.amazonaws.eu-west-1.s3".into(),
                kind: EndpointKind::Gateway,
                available: true,
                private_dns: false,
                security_groups: Vec::new(),
                route_tables: vec!["rtb-1".into()],
                policy: None,
            },
        ],
        route_tables: BTreeMap::from([(
            "subnet-1".to_owned(),
            RouteTable {
                id: "rtb-1".into(),
                prefix_list_routes: vec![PrefixListRoute {
                    prefix_list_id: "pl-s3".into(),
                    gateway_id: "vpce-s3".into(),
                }],
            },
        )]),
        ingress: vec![IngressRule {
            group_id: "sg-endpoints".into(),
            protocol: "tcp".into(),
            from_port: Some(443),
            to_port: Some(443),
            cidrs: vec!["10.0.0.0/16".into()],
            source_groups: Vec::new(),
        }],
        ..NetState::default()
    }
}

/// IAM's AccessDenied, worded as IAM words it (e.g. terraform-aws-modules/terraform-aws-eks#2517:
/// "User: arn:aws:sts::…:assumed-role/…/… is not authorized to perform: iam:GetRole on resource:
/// role X with an explicit deny in an identity-based policy").
fn access_denied(target: &Target, action: &'static str, resource: &str, why: &str) -> Error {
    Error::Aws {
        operation: action,
        message: format!(
            "AccessDenied: User: arn:aws:sts::{}:assumed-role/{}/airf-controller is not \
             authorized to perform: {action} on resource: {resource} {why}",
            target.account,
            names::MEMBER_ROLE
        ),
        retryable: false,
    }
}

impl State {
    /// The customer-managed policy, or IAM's NoSuchEntity.
    fn policy(&self, arn: &str) -> Result<&FakePolicy> {
        self.policies.get(arn).ok_or_else(|| no_such_policy(arn))
    }

    /// [`State::policy`], to change.
    fn policy_mut(&mut self, arn: &str) -> Result<&mut FakePolicy> {
        self.policies
            .get_mut(arn)
            .ok_or_else(|| no_such_policy(arn))
    }
}

fn no_such_policy(arn: &str) -> Error {
    Error::Aws {
        operation: "iam",
        message: format!("NoSuchEntity: Policy {arn} does not exist or is not attachable."),
        retryable: false,
    }
}

#[cfg(test)]
mod tests {
    use super::names::*;

    /// The fake's IAM names are template 4's defaults: a test passing on other names would
    /// say nothing about the deployed account.
    #[test]
    fn names_are_template_4s() {
        let template = include_str!("../../packaging/cloudformation/src/4-member.yaml");
        let default_of = |parameter: &str| -> Option<String> {
            let at = template.find(&format!("\n  {parameter}:\n"))?;
            let rest = template.get(at..)?;
            let line = rest
                .lines()
                .find(|l| l.trim_start().starts_with("Default:"))?;
            Some(
                line.trim_start()
                    .trim_start_matches("Default:")
                    .trim()
                    .to_owned(),
            )
        };
        for (parameter, name) in [
            ("MemberRoleName", MEMBER_ROLE),
            ("AcquisitionRoleName", ACQUISITION_ROLE),
            ("AcquisitionProfileName", ACQUISITION_PROFILE),
            ("IsolationRoleName", ISOLATION_ROLE),
            ("IsolationProfileName", ISOLATION_PROFILE),
            ("ForwarderRoleName", FORWARDER_ROLE),
            ("RevokedSessionsPolicyName", REVOKE_POLICY),
        ] {
            assert_eq!(default_of(parameter).as_deref(), Some(name), "{parameter}");
        }
    }
}
