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
    /// A new execution, or the running one of the same name and input (a redelivered event).
    Execution(String),
    /// `ExecutionAlreadyExists`: the name belongs to an execution that has ended (Step Functions
    /// keeps names for 90 days) or that runs with another input.
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

/// An instance protection `contain` asks for. Each is one ModifyInstanceAttribute call, since EC2
/// takes one attribute per call and refuses some on some instances (both on Spot instances).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProtectionKind {
    /// `DisableApiTermination`: TerminateInstances is refused.
    Termination,
    /// `DisableApiStop`: StopInstances is refused.
    Stop,
}

impl ProtectionKind {
    /// Both, in the order `contain` applies them.
    pub const ALL: [ProtectionKind; 2] = [ProtectionKind::Termination, ProtectionKind::Stop];

    /// The attribute's name in the EC2 API.
    pub fn attribute(self) -> &'static str {
        match self {
            ProtectionKind::Termination => "disableApiTermination",
            ProtectionKind::Stop => "disableApiStop",
        }
    }

    /// Words for the notification.
    pub fn as_str(self) -> &'static str {
        match self {
            ProtectionKind::Termination => "termination",
            ProtectionKind::Stop => "stop",
        }
    }
}

/// One route of the route table that serves the instance's subnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Destination: an IPv4 or IPv6 CIDR, or a prefix list id (`pl-…`).
    pub destination: String,
    /// Where it goes: `igw-…`, `nat-…`, `tgw-…`, `pcx-…`, `vgw-…`, `eni-…`, `local`, …
    pub target: String,
    /// False for a blackhole route (its target is gone).
    pub active: bool,
}

/// The route table that serves a subnet: its own association, else the VPC's main table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetRoutes {
    /// The instance's subnet.
    pub subnet_id: String,
    /// The route table.
    pub route_table_id: String,
    /// Whether it is the VPC's main table (the subnet has no association of its own).
    pub main: bool,
    /// Its routes.
    pub routes: Vec<Route>,
}

/// A load-balancer target registration of the instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetRegistration {
    /// Target group ARN.
    pub target_group_arn: String,
    /// Registered port, if any.
    pub port: Option<i32>,
}

// ------------------------------------------------ contain-first isolation and release: data
// (used by actions/isolate.rs and actions/release.rs; the calls are the last block of the trait)

/// What kind of VPC endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EndpointKind {
    /// Elastic network interfaces in subnets, with security groups (and private DNS).
    Interface,
    /// A route-table target (S3, DynamoDB): reached through the service's prefix list.
    Gateway,
    /// Gateway Load Balancer, resource or service-network endpoints: of no use to airf.
    Other,
}

/// A VPC endpoint, as DescribeVpcEndpoints tells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VpcEndpoint {
    /// `vpce-…`.
    pub id: String,
    /// e.g. `com.amazonaws.eu-west-1.ssm`.
    pub service_name: String,
    /// Interface or gateway.
    pub kind: EndpointKind,
    /// State `available` (not pending, rejected, deleting…).
    pub available: bool,
    /// Interface endpoints: whether the service's public DNS name resolves to the endpoint.
    pub private_dns: bool,
    /// Interface endpoints: their security groups.
    pub security_groups: Vec<String>,
    /// Gateway endpoints: the route tables they are associated with.
    pub route_tables: Vec<String>,
    /// The endpoint policy document (JSON); None: none returned.
    pub policy: Option<String>,
}

/// Where the instance's primary network interface is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceNetwork {
    /// Subnet of the primary interface.
    pub subnet_id: String,
    /// Its primary private IPv4 address.
    pub private_ip: Option<String>,
}

/// A route to a prefix list (how a gateway endpoint is reached).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrefixListRoute {
    /// `pl-…`: the destination.
    pub prefix_list_id: String,
    /// The target (`vpce-…` for a gateway endpoint).
    pub gateway_id: String,
}

/// The route table a subnet uses: its explicit association, else the VPC's main table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteTable {
    /// `rtb-…`.
    pub id: String,
    /// Its routes whose destination is a prefix list.
    pub prefix_list_routes: Vec<PrefixListRoute>,
}

/// One inbound rule of a security group (one IpPermission).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngressRule {
    /// The group the rule belongs to.
    pub group_id: String,
    /// `tcp`, `6`, `-1` (all), …
    pub protocol: String,
    /// First port (None: all).
    pub from_port: Option<i32>,
    /// Last port (None: all).
    pub to_port: Option<i32>,
    /// IPv4 sources.
    pub cidrs: Vec<String>,
    /// Source security groups.
    pub source_groups: Vec<String>,
}

/// An outbound TCP 443 rule of the endpoints-only isolation group.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpsEgress {
    /// To the interfaces of this security group (an interface endpoint's).
    Group(String),
    /// To this prefix list (an S3 gateway endpoint's).
    PrefixList(String),
}

/// Termination and stop protection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Protection {
    /// DisableApiTermination.
    pub termination: bool,
    /// DisableApiStop.
    pub stop: bool,
}

// ------------------------------------------------ control-plane evidence (actions/control_plane.rs)

/// One read-only AWS call of the control-plane evidence, with its parameters. The answer is
/// the service's response as it came, in JSON ([`ControlPlaneAnswer`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum ControlPlaneCall {
    /// ec2:DescribeInstances of the instance.
    DescribeInstances { instance_id: String },
    /// ec2:DescribeNetworkInterfaces of its interfaces.
    DescribeNetworkInterfaces { ids: Vec<String> },
    /// ec2:DescribeSecurityGroups of its interfaces' groups.
    DescribeSecurityGroups { ids: Vec<String> },
    /// ec2:DescribeRouteTables of its VPC (every table: the main one and the subnets').
    DescribeRouteTables { vpc_id: String },
    /// ec2:DescribeFlowLogs of its VPC, subnets and interfaces.
    DescribeFlowLogs { resource_ids: Vec<String> },
    /// ec2:GetConsoleOutput (`Latest`).
    GetConsoleOutput { instance_id: String },
    /// ec2:GetConsoleScreenshot (`WakeUp` false: nothing is sent to the instance).
    GetConsoleScreenshot { instance_id: String },
    /// iam:GetInstanceProfile.
    GetInstanceProfile { name: String },
    /// iam:GetRole.
    GetRole { name: String },
    /// iam:ListAttachedRolePolicies (one page of at most 100).
    ListAttachedRolePolicies { role: String },
    /// iam:ListRolePolicies (one page of at most 100).
    ListRolePolicies { role: String },
    /// iam:GetRolePolicy.
    GetRolePolicy { role: String, policy: String },
    /// iam:GetPolicy.
    GetPolicy { arn: String },
    /// iam:GetPolicyVersion.
    GetPolicyVersion { arn: String, version: String },
    /// cloudtrail:LookupEvents, one page.
    LookupEvents {
        /// `ResourceName`, `Username`, `AccessKeyId`.
        key: String,
        value: String,
        /// RFC 3339.
        start: String,
        /// RFC 3339.
        end: String,
        max_results: i32,
        next_token: Option<String>,
    },
}

impl ControlPlaneCall {
    /// The service, as IAM names it.
    pub fn service(&self) -> &'static str {
        use ControlPlaneCall::*;
        match self {
            DescribeInstances { .. }
            | DescribeNetworkInterfaces { .. }
            | DescribeSecurityGroups { .. }
            | DescribeRouteTables { .. }
            | DescribeFlowLogs { .. }
            | GetConsoleOutput { .. }
            | GetConsoleScreenshot { .. } => "ec2",
            GetInstanceProfile { .. }
            | GetRole { .. }
            | ListAttachedRolePolicies { .. }
            | ListRolePolicies { .. }
            | GetRolePolicy { .. }
            | GetPolicy { .. }
            | GetPolicyVersion { .. } => "iam",
            LookupEvents { .. } => "cloudtrail",
        }
    }

    /// The API operation.
    pub fn operation(&self) -> &'static str {
        use ControlPlaneCall::*;
        match self {
            DescribeInstances { .. } => "DescribeInstances",
            DescribeNetworkInterfaces { .. } => "DescribeNetworkInterfaces",
            DescribeSecurityGroups { .. } => "DescribeSecurityGroups",
            DescribeRouteTables { .. } => "DescribeRouteTables",
            DescribeFlowLogs { .. } => "DescribeFlowLogs",
            GetConsoleOutput { .. } => "GetConsoleOutput",
            GetConsoleScreenshot { .. } => "GetConsoleScreenshot",
            GetInstanceProfile { .. } => "GetInstanceProfile",
            GetRole { .. } => "GetRole",
            ListAttachedRolePolicies { .. } => "ListAttachedRolePolicies",
            ListRolePolicies { .. } => "ListRolePolicies",
            GetRolePolicy { .. } => "GetRolePolicy",
            GetPolicy { .. } => "GetPolicy",
            GetPolicyVersion { .. } => "GetPolicyVersion",
            LookupEvents { .. } => "LookupEvents",
        }
    }

    /// The request's parameters, named as the API reference names them.
    pub fn parameters(&self) -> serde_json::Value {
        use ControlPlaneCall::*;
        use serde_json::json;
        match self {
            DescribeInstances { instance_id } => json!({ "InstanceIds": [instance_id] }),
            DescribeNetworkInterfaces { ids } => json!({ "NetworkInterfaceIds": ids }),
            DescribeSecurityGroups { ids } => json!({ "GroupIds": ids }),
            DescribeRouteTables { vpc_id } => {
                json!({ "Filters": [{"Name": "vpc-id", "Values": [vpc_id]}] })
            }
            DescribeFlowLogs { resource_ids } => {
                json!({ "Filter": [{"Name": "resource-id", "Values": resource_ids}] })
            }
            GetConsoleOutput { instance_id } => {
                json!({ "InstanceId": instance_id, "Latest": true })
            }
            GetConsoleScreenshot { instance_id } => {
                json!({ "InstanceId": instance_id, "WakeUp": false })
            }
            GetInstanceProfile { name } => json!({ "InstanceProfileName": name }),
            GetRole { name } => json!({ "RoleName": name }),
            ListAttachedRolePolicies { role } | ListRolePolicies { role } => {
                json!({ "RoleName": role, "MaxItems": 100 })
            }
            GetRolePolicy { role, policy } => json!({ "RoleName": role, "PolicyName": policy }),
            GetPolicy { arn } => json!({ "PolicyArn": arn }),
            GetPolicyVersion { arn, version } => {
                json!({ "PolicyArn": arn, "VersionId": version })
            }
            LookupEvents {
                key,
                value,
                start,
                end,
                max_results,
                next_token,
            } => {
                let mut p = json!({
                    "LookupAttributes": [{"AttributeKey": key, "AttributeValue": value}],
                    "StartTime": start, "EndTime": end, "MaxResults": max_results,
                });
                if let (Some(t), Some(o)) = (next_token, p.as_object_mut()) {
                    o.insert("NextToken".into(), json!(t));
                }
                p
            }
        }
    }
}

/// What a control-plane call got.
#[derive(Debug, Clone, PartialEq)]
pub enum ControlPlaneAnswer {
    /// The response body in JSON: CloudTrail's as it came; EC2's and IAM's XML turned into JSON
    /// element by element (a list of `item`/`member` elements becomes an array, an empty
    /// element `null`, the root element's name kept).
    Answer(serde_json::Value),
    /// AWS answered with an error: access denied, an operation the instance or partition does
    /// not support, a role that no longer exists. Recorded, not fatal.
    Refused {
        /// The error code.
        code: String,
        /// AWS's message.
        message: String,
    },
}

/// One version of a managed policy, as ListPolicyVersions describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyVersion {
    /// `v1`, `v2`, …: IAM numbers versions in the order they are created and never reuses one.
    pub id: String,
    /// Whether it is the version in effect.
    pub is_default: bool,
    /// When it was created, Unix seconds.
    pub created: i64,
}

impl PolicyVersion {
    /// The number in the id (`v12` → 12); None for an id IAM would not make.
    pub fn number(&self) -> Option<u64> {
        self.id.strip_prefix('v')?.parse().ok()
    }
}

/// The outcome of CreatePolicyVersion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewVersion {
    /// Created as the default version, with this id.
    Created(String),
    /// IAM refused with `LimitExceeded`: five versions exist already, or the document is over
    /// the size quota. The service's message.
    LimitExceeded(String),
}

// ------------------------------------------------ evidence custody: data (actions/verify.rs and
// custody.rs; the calls are in the controller's own account, beside StartExecution and Publish)

/// The largest object [`Cloud::get_object`] reads: manifests are small; anything larger is not
/// one.
pub const MAX_MANIFEST_BYTES: u64 = 16 * 1024 * 1024;

/// An object read back from the evidence bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// Its version id, when the bucket is versioned.
    pub version_id: Option<String>,
}

/// What HeadObject tells of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectHead {
    /// Stored size in bytes.
    pub size: u64,
    /// Its version id, when the bucket is versioned.
    pub version_id: Option<String>,
}

/// The outcome of a PutObject with `If-None-Match: *`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutNew {
    /// Stored: the key had no object.
    Created,
    /// `412 PreconditionFailed`: an object already has the key; nothing was written.
    Exists,
    /// `409 ConditionalRequestConflict`: another conditional write to the key was in flight;
    /// nothing was written, and the key may or may not hold an object now.
    Conflict,
}

/// A KMS signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsSignature {
    /// The key that signed, as KMS names it (key ARN).
    pub key_id: String,
    /// DER-encoded ECDSA signature.
    pub der: Vec<u8>,
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
    /// ModifyInstanceAttribute: one protection on.
    async fn protect(&self, target: &Target, protection: ProtectionKind) -> Result<()>;
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
    /// GetRole: the ARN of the role's permissions boundary, if it has one.
    async fn role_boundary(&self, target: &Target, role_name: &str) -> Result<Option<String>>;
    /// PutRolePermissionsBoundary: `policy_arn` becomes the role's boundary.
    async fn put_role_boundary(
        &self,
        target: &Target,
        role_name: &str,
        policy_arn: &str,
    ) -> Result<()>;
    /// ListPolicyVersions of a managed policy (at most five).
    async fn policy_versions(
        &self,
        target: &Target,
        policy_arn: &str,
    ) -> Result<Vec<PolicyVersion>>;
    /// GetPolicyVersion: the document, decoded; None when that version no longer exists.
    async fn policy_version_document(
        &self,
        target: &Target,
        policy_arn: &str,
        version_id: &str,
    ) -> Result<Option<String>>;
    /// CreatePolicyVersion, set as the default version.
    async fn create_policy_version(
        &self,
        target: &Target,
        policy_arn: &str,
        document: &str,
    ) -> Result<NewVersion>;
    /// DeletePolicyVersion; a version already gone is not an error.
    async fn delete_policy_version(
        &self,
        target: &Target,
        policy_arn: &str,
        version_id: &str,
    ) -> Result<()>;
    /// DescribeInstances + DescribeRouteTables: the routes of the instance's subnet (its own
    /// route table, else the VPC's main one). None: the instance is in no subnet.
    async fn subnet_routes(&self, target: &Target) -> Result<Option<SubnetRoutes>>;
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
    /// GetObject from the evidence bucket of an object the size of a manifest (16 MiB at
    /// most); None: no such key.
    async fn get_object(&self, bucket: &str, key: &str) -> Result<Option<StoredObject>>;
    /// GetObject of an object of up to `max_bytes` (a larger one is refused before its body is
    /// read); None: no such key.
    async fn get_object_up_to(
        &self,
        bucket: &str,
        key: &str,
        max_bytes: u64,
    ) -> Result<Option<StoredObject>>;
    /// HeadObject: the object's size and version; None: no such key.
    async fn head_object(&self, bucket: &str, key: &str) -> Result<Option<ObjectHead>>;
    /// PutObject with `If-None-Match: *` and the body's SHA-256 checksum (S3 refuses a body
    /// that does not match it) to the evidence bucket (SSE-KMS with `kms_key_id` when it is not
    /// empty): an object is never replaced.
    async fn put_new_object(
        &self,
        bucket: &str,
        key: &str,
        body: &[u8],
        content_type: &str,
        kms_key_id: &str,
    ) -> Result<PutNew>;
    /// ListObjectsV2 (every page): the keys under `prefix`, after `start_after` when given, in
    /// S3's (UTF-8 byte) order.
    async fn list_keys(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
    ) -> Result<Vec<String>>;
    /// kms:Sign with `ECDSA_SHA_256` over `message` (MessageType RAW: KMS hashes it).
    async fn sign(&self, key_id: &str, message: &[u8]) -> Result<KmsSignature>;
    /// sts:GetCallerIdentity: the controller's own principal ARN.
    async fn caller_arn(&self) -> Result<String>;

    /// A read-only call of the control-plane evidence (actions/control_plane.rs), in the
    /// instance's account and region. An error answer of the service is
    /// [`ControlPlaneAnswer::Refused`]; only a failure to reach it is an `Err`.
    async fn control_plane(
        &self,
        target: &Target,
        call: &ControlPlaneCall,
    ) -> Result<ControlPlaneAnswer>;

    // -------------------------------------- contain-first isolation and release (isolate.rs,
    // release.rs); in the instance's account and region.
    /// DescribeInstances: the primary interface's subnet and private address.
    async fn instance_network(&self, target: &Target) -> Result<InstanceNetwork>;
    /// DescribeVpcEndpoints of the VPC.
    async fn vpc_endpoints(&self, target: &Target, vpc_id: &str) -> Result<Vec<VpcEndpoint>>;
    /// DescribeRouteTables: the table the subnet uses (explicit association, else main).
    async fn subnet_route_table(
        &self,
        target: &Target,
        vpc_id: &str,
        subnet_id: &str,
    ) -> Result<Option<RouteTable>>;
    /// DescribeSecurityGroups: the inbound rules of these groups.
    async fn group_ingress(
        &self,
        target: &Target,
        group_ids: &[String],
    ) -> Result<Vec<IngressRule>>;
    /// DescribeSecurityGroups: the id of the group `name` in `vpc_id`, if it exists.
    async fn security_group_id(
        &self,
        target: &Target,
        vpc_id: &str,
        name: &str,
    ) -> Result<Option<String>>;
    /// The group `name` in `vpc_id` (created tagged `airf:managed=true` if missing) with exactly
    /// these outbound rules and no inbound rule; returns its id.
    async fn ensure_https_egress_group(
        &self,
        target: &Target,
        vpc_id: &str,
        name: &str,
        egress: &[HttpsEgress],
    ) -> Result<String>;
    /// DescribeInstanceAttribute (twice): termination and stop protection now.
    async fn protection(&self, target: &Target) -> Result<Protection>;
    /// ModifyInstanceAttribute: termination and stop protection set to these values.
    async fn set_protection(&self, target: &Target, protection: Protection) -> Result<()>;
    /// DisassociateIamInstanceProfile.
    async fn disassociate_profile(&self, target: &Target, association_id: &str) -> Result<()>;
    /// DeleteTags on the instance.
    async fn untag_instance(&self, target: &Target, keys: &[String]) -> Result<()>;
    /// AttachInstances: back into the Auto Scaling group.
    async fn attach_to_auto_scaling_group(&self, target: &Target, group: &str) -> Result<()>;
    /// RegisterTargets.
    async fn register(&self, target: &Target, registration: &TargetRegistration) -> Result<()>;
    /// ListCommands: (command id, document) of the instance's Pending, InProgress or Cancelling
    /// commands.
    async fn running_commands(&self, target: &Target) -> Result<Vec<(String, String)>>;
}
