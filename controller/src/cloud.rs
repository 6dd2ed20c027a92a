//! The narrow set of AWS operations the controller needs. The actions are written against this
//! trait, so their decisions are tested with [`crate::fake::FakeCloud`] and the real calls live
//! in one place ([`crate::aws`]).

use crate::error::Result;
use crate::model::{InstanceFacts, Target};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The outcome of StartExecution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    /// A new execution, or the same name with the same input (a duplicate event).
    Execution(String),
    /// An execution of this name exists with another input: another trigger won.
    AlreadyExists,
}

/// A Run Command invocation's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invocation {
    /// SSM status: Pending, InProgress, Delayed, Success, Cancelled, TimedOut, Failed, …
    pub status: String,
    /// Standard output of the step (SSM keeps the first 24,000 characters).
    pub stdout: String,
    /// Standard error of the step.
    pub stderr: String,
}

/// A load-balancer target registration of the instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetRegistration {
    /// Target group ARN.
    pub target_group_arn: String,
    /// Registered port, if any.
    pub port: Option<i32>,
}

/// Operations in the instance's (member) account and region, through the assumed role; and in the
/// controller's own account. Each method is one AWS API call or a short fixed sequence of them.
#[allow(async_fn_in_trait)]
pub trait Cloud {
    /// DescribeInstances (+ DescribeIamInstanceProfileAssociations). None: no such instance.
    async fn describe_instance(&self, target: &Target) -> Result<Option<InstanceFacts>>;
    /// CreateTags on the instance.
    async fn tag_instance(&self, target: &Target, tags: &BTreeMap<String, String>) -> Result<()>;
    /// AssociateIamInstanceProfile.
    async fn associate_profile(&self, target: &Target, profile_name: &str) -> Result<()>;
    /// ReplaceIamInstanceProfileAssociation.
    async fn replace_profile(
        &self,
        target: &Target,
        association_id: &str,
        profile_name: &str,
    ) -> Result<()>;
    /// Whether SSM reports the instance managed and online (DescribeInstanceInformation).
    async fn ssm_online(&self, target: &Target) -> Result<bool>;
    /// SendCommand; returns the command id.
    async fn send_command(
        &self,
        target: &Target,
        document: &str,
        parameters: &BTreeMap<String, Vec<String>>,
        timeout_seconds: i32,
        comment: &str,
    ) -> Result<String>;
    /// GetCommandInvocation for one plugin (step) of the document.
    async fn command_invocation(
        &self,
        target: &Target,
        command_id: &str,
        plugin: &str,
    ) -> Result<Invocation>;
    /// The id of the security group `name` in `vpc_id`, created (tagged, and with no rules, or
    /// with allow-all rules when `allow_all`) if it does not exist.
    async fn ensure_security_group(
        &self,
        target: &Target,
        vpc_id: &str,
        name: &str,
        allow_all: bool,
    ) -> Result<String>;
    /// ModifyNetworkInterfaceAttribute: set the interface's groups.
    async fn set_interface_groups(
        &self,
        target: &Target,
        interface_id: &str,
        groups: &[String],
    ) -> Result<()>;
    /// ModifyInstanceAttribute: termination and stop protection on.
    async fn protect(&self, target: &Target) -> Result<()>;
    /// ModifyInstanceAttribute: DeleteOnTermination=false for these devices.
    async fn keep_volumes(&self, target: &Target, devices: &[String]) -> Result<()>;
    /// DescribeSnapshots: this account's snapshots tagged `airf:case=<case_id>`, as
    /// (volume id, snapshot id), so a retried containment does not snapshot twice.
    async fn case_snapshots(&self, target: &Target, case_id: &str)
    -> Result<Vec<(String, String)>>;
    /// CreateSnapshot, tagged; returns the snapshot id.
    async fn snapshot(
        &self,
        target: &Target,
        volume_id: &str,
        description: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<String>;
    /// GetInstanceProfile: the role names in an instance profile.
    async fn profile_roles(&self, target: &Target, profile_name: &str) -> Result<Vec<String>>;
    /// PutRolePolicy: an inline policy on a role (contain's revocation of earlier sessions).
    async fn put_role_policy(
        &self,
        target: &Target,
        role_name: &str,
        policy_name: &str,
        policy_document: &str,
    ) -> Result<()>;
    /// DescribeAutoScalingInstances: the instance's group, if any.
    async fn auto_scaling_group(&self, target: &Target) -> Result<Option<String>>;
    /// DetachInstances (desired capacity kept, so the group replaces the instance).
    async fn detach_from_auto_scaling_group(&self, target: &Target, group: &str) -> Result<()>;
    /// DescribeTargetGroups + DescribeTargetHealth: where the instance is registered.
    async fn target_registrations(&self, target: &Target) -> Result<Vec<TargetRegistration>>;
    /// DeregisterTargets.
    async fn deregister(&self, target: &Target, registration: &TargetRegistration) -> Result<()>;

    /// StartExecution in the controller's account.
    async fn start_execution(
        &self,
        state_machine_arn: &str,
        name: &str,
        input: &str,
    ) -> Result<Started>;
    /// SNS Publish in the controller's account.
    async fn publish(&self, topic_arn: &str, subject: &str, message: &str) -> Result<()>;
    /// GetObject from the evidence bucket; None: no such key.
    async fn get_object(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>>;
    /// HeadObject: the object's size; None: no such key.
    async fn object_size(&self, bucket: &str, key: &str) -> Result<Option<u64>>;
}
