//! [`Cloud`] on the AWS SDK. Calls in member accounts go through the member role, assumed per
//! account and region and cached until shortly before its credentials expire; StartExecution,
//! Publish and the evidence reads use the controller's own role.

use crate::cloud::{Cloud, Invocation, Started, TargetRegistration};
use crate::error::{Error, Result};
use crate::model::{
    InstanceFacts, InstanceState, Interface, MANAGED_TAG, ProfileAssociation, Target, Volume,
};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_ec2::types as ec2t;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use aws_types::SdkConfig;
use aws_types::region::Region;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::Mutex;

/// Manifests are small; anything larger is not one.
const MAX_MANIFEST_BYTES: i64 = 16 * 1024 * 1024;

/// Error codes that mean "try again later".
const RETRYABLE_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "RequestThrottled",
    "SlowDown",
    "ServiceUnavailable",
    "InternalError",
    "InternalFailure",
    "IncorrectInstanceState",
    "IncorrectState",
];

fn aws_err<E>(operation: &'static str) -> impl FnOnce(SdkError<E, HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    move |e| {
        let code = e.code().unwrap_or_default().to_owned();
        let server = e
            .raw_response()
            .is_some_and(|r| r.status().is_server_error());
        let retryable = matches!(e, SdkError::TimeoutError(_) | SdkError::DispatchFailure(_))
            || server
            || RETRYABLE_CODES.contains(&code.as_str());
        Error::Aws {
            operation,
            message: DisplayErrorContext(&e).to_string(),
            retryable,
        }
    }
}

fn code_of<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> &str {
    e.code().unwrap_or_default()
}

/// The current UTC time, RFC 3339.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
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

/// Clients in one member account and region.
#[derive(Debug)]
struct Member {
    ec2: aws_sdk_ec2::Client,
    iam: aws_sdk_iam::Client,
    ssm: aws_sdk_ssm::Client,
    autoscaling: aws_sdk_autoscaling::Client,
    elb: aws_sdk_elasticloadbalancingv2::Client,
    expires: SystemTime,
}

/// The SDK implementation.
#[derive(Debug)]
pub struct AwsCloud {
    base: SdkConfig,
    member_role_name: String,
    sts: aws_sdk_sts::Client,
    sfn: aws_sdk_sfn::Client,
    sns: aws_sdk_sns::Client,
    s3: aws_sdk_s3::Client,
    members: Mutex<HashMap<(String, String), Arc<Member>>>,
}

impl AwsCloud {
    /// Clients from the Lambda environment (credentials, region, `AWS_ENDPOINT_URL` in tests).
    pub async fn from_env(member_role_name: String, evidence_region: &str) -> Self {
        let base = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        // An endpoint override is an emulator on an IP address: S3 needs path-style requests.
        let path_style = std::env::var_os("AWS_ENDPOINT_URL").is_some();
        Self::from_config(base, member_role_name, evidence_region, path_style)
    }

    /// Clients from an SDK configuration.
    pub fn from_config(
        base: SdkConfig,
        member_role_name: String,
        evidence_region: &str,
        s3_path_style: bool,
    ) -> Self {
        let s3_conf = aws_sdk_s3::config::Builder::from(&base)
            .region(Region::new(evidence_region.to_owned()))
            .force_path_style(s3_path_style)
            .build();
        AwsCloud {
            sts: aws_sdk_sts::Client::new(&base),
            sfn: aws_sdk_sfn::Client::new(&base),
            sns: aws_sdk_sns::Client::new(&base),
            s3: aws_sdk_s3::Client::from_conf(s3_conf),
            base,
            member_role_name,
            members: Mutex::new(HashMap::new()),
        }
    }

    async fn member(&self, target: &Target) -> Result<Arc<Member>> {
        let key = (target.account.clone(), target.region.clone());
        let mut members = self.members.lock().await;
        if let Some(m) = members.get(&key)
            && m.expires > SystemTime::now() + Duration::from_secs(300)
        {
            return Ok(m.clone());
        }
        let role_arn = format!(
            "arn:{}:iam::{}:role/{}",
            partition(&target.region),
            target.account,
            self.member_role_name
        );
        let out = self
            .sts
            .assume_role()
            .role_arn(&role_arn)
            .role_session_name("airf-controller")
            .duration_seconds(3600)
            .send()
            .await
            .map_err(aws_err("sts:AssumeRole"))?;
        let c = out.credentials().ok_or_else(|| {
            Error::failed(format!("sts:AssumeRole {role_arn} returned no credentials"))
        })?;
        let expires = SystemTime::try_from(*c.expiration())
            .unwrap_or_else(|_| SystemTime::now() + Duration::from_secs(900));
        let credentials = Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_owned()),
            Some(expires),
            "airf-member-role",
        );
        let conf = self
            .base
            .to_builder()
            .credentials_provider(SharedCredentialsProvider::new(credentials))
            .region(Region::new(target.region.clone()))
            .build();
        let member = Arc::new(Member {
            ec2: aws_sdk_ec2::Client::new(&conf),
            iam: aws_sdk_iam::Client::new(&conf),
            ssm: aws_sdk_ssm::Client::new(&conf),
            autoscaling: aws_sdk_autoscaling::Client::new(&conf),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(&conf),
            expires,
        });
        members.insert(key, member.clone());
        Ok(member)
    }
}

fn instance_state(name: Option<&ec2t::InstanceStateName>) -> InstanceState {
    match name {
        Some(ec2t::InstanceStateName::Stopping | ec2t::InstanceStateName::Stopped) => {
            InstanceState::Stopped
        }
        Some(ec2t::InstanceStateName::ShuttingDown | ec2t::InstanceStateName::Terminated) => {
            InstanceState::Gone
        }
        _ => InstanceState::Running,
    }
}

fn all_traffic() -> ec2t::IpPermission {
    ec2t::IpPermission::builder()
        .ip_protocol("-1")
        .ip_ranges(ec2t::IpRange::builder().cidr_ip("0.0.0.0/0").build())
        .ipv6_ranges(ec2t::Ipv6Range::builder().cidr_ipv6("::/0").build())
        .build()
}

fn tag_spec(kind: ec2t::ResourceType, tags: &BTreeMap<String, String>) -> ec2t::TagSpecification {
    ec2t::TagSpecification::builder()
        .resource_type(kind)
        .set_tags(Some(
            tags.iter()
                .map(|(k, v)| ec2t::Tag::builder().key(k).value(v).build())
                .collect(),
        ))
        .build()
}

fn filter(name: &str, value: &str) -> ec2t::Filter {
    ec2t::Filter::builder().name(name).values(value).build()
}

impl AwsCloud {
    async fn find_group(
        &self,
        m: &Member,
        vpc_id: &str,
        name: &str,
    ) -> Result<Option<ec2t::SecurityGroup>> {
        let out = m
            .ec2
            .describe_security_groups()
            .filters(filter("vpc-id", vpc_id))
            .filters(filter("group-name", name))
            .send()
            .await
            .map_err(aws_err("ec2:DescribeSecurityGroups"))?;
        Ok(out.security_groups().first().cloned())
    }

    /// Makes the group's rules exactly "all traffic" (untrack) or none (isolation).
    async fn enforce_rules(
        &self,
        m: &Member,
        group: &ec2t::SecurityGroup,
        allow_all: bool,
    ) -> Result<()> {
        let id = group.group_id().unwrap_or_default();
        if allow_all {
            if group.ip_permissions().is_empty() {
                m.ec2
                    .authorize_security_group_ingress()
                    .group_id(id)
                    .ip_permissions(all_traffic())
                    .send()
                    .await
                    .map_err(aws_err("ec2:AuthorizeSecurityGroupIngress"))?;
            }
            if group.ip_permissions_egress().is_empty() {
                m.ec2
                    .authorize_security_group_egress()
                    .group_id(id)
                    .ip_permissions(all_traffic())
                    .send()
                    .await
                    .map_err(aws_err("ec2:AuthorizeSecurityGroupEgress"))?;
            }
            return Ok(());
        }
        if !group.ip_permissions_egress().is_empty() {
            m.ec2
                .revoke_security_group_egress()
                .group_id(id)
                .set_ip_permissions(Some(group.ip_permissions_egress().to_vec()))
                .send()
                .await
                .map_err(aws_err("ec2:RevokeSecurityGroupEgress"))?;
        }
        if !group.ip_permissions().is_empty() {
            m.ec2
                .revoke_security_group_ingress()
                .group_id(id)
                .set_ip_permissions(Some(group.ip_permissions().to_vec()))
                .send()
                .await
                .map_err(aws_err("ec2:RevokeSecurityGroupIngress"))?;
        }
        Ok(())
    }
}

impl Cloud for AwsCloud {
    async fn describe_instance(&self, target: &Target) -> Result<Option<InstanceFacts>> {
        let m = self.member(target).await?;
        let out = match m
            .ec2
            .describe_instances()
            .instance_ids(&target.instance_id)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if code_of(&e).starts_with("InvalidInstanceID") => return Ok(None),
            Err(e) => return Err(aws_err("ec2:DescribeInstances")(e)),
        };
        let Some(inst) = out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find(|i| i.instance_id() == Some(target.instance_id.as_str()))
        else {
            return Ok(None);
        };
        let associations = m
            .ec2
            .describe_iam_instance_profile_associations()
            .filters(filter("instance-id", &target.instance_id))
            .send()
            .await
            .map_err(aws_err("ec2:DescribeIamInstanceProfileAssociations"))?;
        let profile = associations
            .iam_instance_profile_associations()
            .iter()
            .filter(|a| {
                matches!(
                    a.state(),
                    Some(
                        ec2t::IamInstanceProfileAssociationState::Associated
                            | ec2t::IamInstanceProfileAssociationState::Associating
                    )
                )
            })
            .find_map(|a| {
                Some(ProfileAssociation {
                    association_id: a.association_id()?.to_owned(),
                    profile_arn: a.iam_instance_profile()?.arn()?.to_owned(),
                })
            });
        Ok(Some(InstanceFacts {
            target: target.clone(),
            state: instance_state(inst.state().and_then(|s| s.name())),
            tags: inst
                .tags()
                .iter()
                .filter_map(|t| {
                    Some((
                        t.key()?.to_owned(),
                        t.value().unwrap_or_default().to_owned(),
                    ))
                })
                .collect(),
            vpc_id: inst.vpc_id().map(str::to_owned),
            interfaces: inst
                .network_interfaces()
                .iter()
                .filter_map(|n| {
                    Some(Interface {
                        id: n.network_interface_id()?.to_owned(),
                        groups: n
                            .groups()
                            .iter()
                            .filter_map(|g| g.group_id().map(str::to_owned))
                            .collect(),
                    })
                })
                .collect(),
            volumes: inst
                .block_device_mappings()
                .iter()
                .filter_map(|b| {
                    let ebs = b.ebs()?;
                    Some(Volume {
                        id: ebs.volume_id()?.to_owned(),
                        device: b.device_name()?.to_owned(),
                        delete_on_termination: ebs.delete_on_termination().unwrap_or(false),
                    })
                })
                .collect(),
            profile,
        }))
    }

    async fn tag_instance(&self, target: &Target, tags: &BTreeMap<String, String>) -> Result<()> {
        let m = self.member(target).await?;
        m.ec2
            .create_tags()
            .resources(&target.instance_id)
            .set_tags(Some(
                tags.iter()
                    .map(|(k, v)| ec2t::Tag::builder().key(k).value(v).build())
                    .collect(),
            ))
            .send()
            .await
            .map_err(aws_err("ec2:CreateTags"))?;
        Ok(())
    }

    async fn associate_profile(&self, target: &Target, profile_name: &str) -> Result<()> {
        let m = self.member(target).await?;
        m.ec2
            .associate_iam_instance_profile()
            .instance_id(&target.instance_id)
            .iam_instance_profile(
                ec2t::IamInstanceProfileSpecification::builder()
                    .name(profile_name)
                    .build(),
            )
            .send()
            .await
            .map_err(aws_err("ec2:AssociateIamInstanceProfile"))?;
        Ok(())
    }

    async fn replace_profile(
        &self,
        target: &Target,
        association_id: &str,
        profile_name: &str,
    ) -> Result<()> {
        let m = self.member(target).await?;
        m.ec2
            .replace_iam_instance_profile_association()
            .association_id(association_id)
            .iam_instance_profile(
                ec2t::IamInstanceProfileSpecification::builder()
                    .name(profile_name)
                    .build(),
            )
            .send()
            .await
            .map_err(aws_err("ec2:ReplaceIamInstanceProfileAssociation"))?;
        Ok(())
    }

    async fn ssm_online(&self, target: &Target) -> Result<bool> {
        let m = self.member(target).await?;
        let filter = aws_sdk_ssm::types::InstanceInformationStringFilter::builder()
            .key("InstanceIds")
            .values(&target.instance_id)
            .build()
            .map_err(|e| Error::failed(format!("ssm filter: {e}")))?;
        let out = m
            .ssm
            .describe_instance_information()
            .filters(filter)
            .send()
            .await
            .map_err(aws_err("ssm:DescribeInstanceInformation"))?;
        Ok(out.instance_information_list().iter().any(|i| {
            i.instance_id() == Some(target.instance_id.as_str())
                && i.ping_status() == Some(&aws_sdk_ssm::types::PingStatus::Online)
        }))
    }

    async fn send_command(
        &self,
        target: &Target,
        document: &str,
        parameters: &BTreeMap<String, Vec<String>>,
        timeout_seconds: i32,
        comment: &str,
    ) -> Result<String> {
        let m = self.member(target).await?;
        let out = m
            .ssm
            .send_command()
            .document_name(document)
            .instance_ids(&target.instance_id)
            .set_parameters(Some(
                parameters
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ))
            .timeout_seconds(timeout_seconds)
            .comment(comment.chars().take(100).collect::<String>())
            .send()
            .await
            .map_err(aws_err("ssm:SendCommand"))?;
        out.command()
            .and_then(|c| c.command_id())
            .map(str::to_owned)
            .ok_or_else(|| Error::failed("ssm:SendCommand returned no command id"))
    }

    async fn command_invocation(
        &self,
        target: &Target,
        command_id: &str,
        plugin: &str,
    ) -> Result<Invocation> {
        let m = self.member(target).await?;
        let out = match m
            .ssm
            .get_command_invocation()
            .command_id(command_id)
            .instance_id(&target.instance_id)
            .plugin_name(plugin)
            .send()
            .await
        {
            Ok(out) => out,
            // Right after SendCommand the invocation may not exist yet.
            Err(e) if code_of(&e) == "InvocationDoesNotExist" => {
                return Ok(Invocation {
                    status: "Pending".into(),
                    stdout: String::new(),
                    stderr: String::new(),
                });
            }
            Err(e) => return Err(aws_err("ssm:GetCommandInvocation")(e)),
        };
        Ok(Invocation {
            status: out
                .status()
                .map(|s| s.as_str().to_owned())
                .unwrap_or_else(|| "Pending".into()),
            stdout: out.standard_output_content().unwrap_or_default().to_owned(),
            stderr: out.standard_error_content().unwrap_or_default().to_owned(),
        })
    }

    async fn ensure_security_group(
        &self,
        target: &Target,
        vpc_id: &str,
        name: &str,
        allow_all: bool,
    ) -> Result<String> {
        let m = self.member(target).await?;
        if let Some(group) = self.find_group(&m, vpc_id, name).await? {
            self.enforce_rules(&m, &group, allow_all).await?;
            return group
                .group_id()
                .map(str::to_owned)
                .ok_or_else(|| Error::failed("security group without id"));
        }
        let description = if allow_all {
            "airf: allows all traffic for a moment so existing connections become untracked before isolation"
        } else {
            "airf: isolation, no rules: no traffic in or out"
        };
        let tags = BTreeMap::from([(MANAGED_TAG.to_owned(), "true".to_owned())]);
        match m
            .ec2
            .create_security_group()
            .group_name(name)
            .description(description)
            .vpc_id(vpc_id)
            .tag_specifications(tag_spec(ec2t::ResourceType::SecurityGroup, &tags))
            .send()
            .await
        {
            Ok(_) => {}
            // Created a moment ago by a parallel containment in the same VPC.
            Err(e) if code_of(&e) == "InvalidGroup.Duplicate" => {}
            Err(e) => return Err(aws_err("ec2:CreateSecurityGroup")(e)),
        }
        let group = self
            .find_group(&m, vpc_id, name)
            .await?
            .ok_or_else(|| Error::Aws {
                operation: "ec2:DescribeSecurityGroups",
                message: format!("{name} not visible yet"),
                retryable: true,
            })?;
        self.enforce_rules(&m, &group, allow_all).await?;
        group
            .group_id()
            .map(str::to_owned)
            .ok_or_else(|| Error::failed("security group without id"))
    }

    async fn set_interface_groups(
        &self,
        target: &Target,
        interface_id: &str,
        groups: &[String],
    ) -> Result<()> {
        let m = self.member(target).await?;
        m.ec2
            .modify_network_interface_attribute()
            .network_interface_id(interface_id)
            .set_groups(Some(groups.to_vec()))
            .send()
            .await
            .map_err(aws_err("ec2:ModifyNetworkInterfaceAttribute"))?;
        Ok(())
    }

    async fn protect(&self, target: &Target) -> Result<()> {
        let m = self.member(target).await?;
        let yes = ec2t::AttributeBooleanValue::builder().value(true).build();
        m.ec2
            .modify_instance_attribute()
            .instance_id(&target.instance_id)
            .disable_api_termination(yes.clone())
            .send()
            .await
            .map_err(aws_err("ec2:ModifyInstanceAttribute"))?;
        m.ec2
            .modify_instance_attribute()
            .instance_id(&target.instance_id)
            .disable_api_stop(yes)
            .send()
            .await
            .map_err(aws_err("ec2:ModifyInstanceAttribute"))?;
        Ok(())
    }

    async fn keep_volumes(&self, target: &Target, devices: &[String]) -> Result<()> {
        let m = self.member(target).await?;
        let mappings = devices
            .iter()
            .map(|d| {
                ec2t::InstanceBlockDeviceMappingSpecification::builder()
                    .device_name(d)
                    .ebs(
                        ec2t::EbsInstanceBlockDeviceSpecification::builder()
                            .delete_on_termination(false)
                            .build(),
                    )
                    .build()
            })
            .collect();
        m.ec2
            .modify_instance_attribute()
            .instance_id(&target.instance_id)
            .set_block_device_mappings(Some(mappings))
            .send()
            .await
            .map_err(aws_err("ec2:ModifyInstanceAttribute"))?;
        Ok(())
    }

    async fn case_snapshots(
        &self,
        target: &Target,
        case_id: &str,
    ) -> Result<Vec<(String, String)>> {
        let m = self.member(target).await?;
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = m
                .ec2
                .describe_snapshots()
                .owner_ids("self")
                .filters(filter(&format!("tag:{}", crate::model::CASE_TAG), case_id))
                .set_next_token(token.take())
                .send()
                .await
                .map_err(aws_err("ec2:DescribeSnapshots"))?;
            found.extend(
                page.snapshots()
                    .iter()
                    .filter_map(|s| Some((s.volume_id()?.to_owned(), s.snapshot_id()?.to_owned()))),
            );
            match page.next_token() {
                Some(next) if !next.is_empty() => token = Some(next.to_owned()),
                _ => break,
            }
        }
        Ok(found)
    }

    async fn snapshot(
        &self,
        target: &Target,
        volume_id: &str,
        description: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<String> {
        let m = self.member(target).await?;
        let out = m
            .ec2
            .create_snapshot()
            .volume_id(volume_id)
            .description(description)
            .tag_specifications(tag_spec(ec2t::ResourceType::Snapshot, tags))
            .send()
            .await
            .map_err(aws_err("ec2:CreateSnapshot"))?;
        out.snapshot_id()
            .map(str::to_owned)
            .ok_or_else(|| Error::failed("ec2:CreateSnapshot returned no id"))
    }

    async fn profile_roles(&self, target: &Target, profile_name: &str) -> Result<Vec<String>> {
        let m = self.member(target).await?;
        match m
            .iam
            .get_instance_profile()
            .instance_profile_name(profile_name)
            .send()
            .await
        {
            Ok(out) => Ok(out
                .instance_profile()
                .map(|p| p.roles().iter().map(|r| r.role_name().to_owned()).collect())
                .unwrap_or_default()),
            Err(e) if code_of(&e) == "NoSuchEntity" => Ok(Vec::new()),
            Err(e) => Err(aws_err("iam:GetInstanceProfile")(e)),
        }
    }

    async fn revoke_sessions(&self, target: &Target, role_name: &str, before: &str) -> Result<()> {
        let m = self.member(target).await?;
        let instance_arn = format!(
            "arn:{}:ec2:{}:{}:instance/{}",
            partition(&target.region),
            target.region,
            target.account,
            target.instance_id
        );
        // Scoped to this instance's sessions: other instances sharing the role keep working.
        let policy = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Sid": "AirfRevokeSessionsOfContainedInstance",
                "Effect": "Deny",
                "Action": "*",
                "Resource": "*",
                "Condition": {
                    "DateLessThan": { "aws:TokenIssueTime": before },
                    "StringEquals": { "ec2:SourceInstanceARN": instance_arn }
                }
            }]
        });
        m.iam
            .put_role_policy()
            .role_name(role_name)
            .policy_name(crate::actions::contain::revoke_policy_name(
                &target.instance_id,
            ))
            .policy_document(policy.to_string())
            .send()
            .await
            .map_err(aws_err("iam:PutRolePolicy"))?;
        Ok(())
    }

    async fn auto_scaling_group(&self, target: &Target) -> Result<Option<String>> {
        let m = self.member(target).await?;
        let out = m
            .autoscaling
            .describe_auto_scaling_instances()
            .instance_ids(&target.instance_id)
            .send()
            .await
            .map_err(aws_err("autoscaling:DescribeAutoScalingInstances"))?;
        Ok(out
            .auto_scaling_instances()
            .iter()
            .find(|i| i.instance_id() == Some(target.instance_id.as_str()))
            .and_then(|i| i.auto_scaling_group_name().map(str::to_owned)))
    }

    async fn detach_from_auto_scaling_group(&self, target: &Target, group: &str) -> Result<()> {
        let m = self.member(target).await?;
        m.autoscaling
            .detach_instances()
            .auto_scaling_group_name(group)
            .instance_ids(&target.instance_id)
            .should_decrement_desired_capacity(false)
            .send()
            .await
            .map_err(aws_err("autoscaling:DetachInstances"))?;
        Ok(())
    }

    async fn target_registrations(&self, target: &Target) -> Result<Vec<TargetRegistration>> {
        let m = self.member(target).await?;
        let mut found = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = m
                .elb
                .describe_target_groups()
                .set_marker(marker.take())
                .send()
                .await
                .map_err(aws_err("elasticloadbalancing:DescribeTargetGroups"))?;
            for group in page.target_groups() {
                let Some(arn) = group.target_group_arn() else {
                    continue;
                };
                if group.target_type().is_some_and(|t| {
                    *t != aws_sdk_elasticloadbalancingv2::types::TargetTypeEnum::Instance
                }) {
                    continue;
                }
                let health = m
                    .elb
                    .describe_target_health()
                    .target_group_arn(arn)
                    .send()
                    .await
                    .map_err(aws_err("elasticloadbalancing:DescribeTargetHealth"))?;
                for d in health.target_health_descriptions() {
                    if let Some(t) = d.target()
                        && t.id() == Some(target.instance_id.as_str())
                    {
                        found.push(TargetRegistration {
                            target_group_arn: arn.to_owned(),
                            port: t.port(),
                        });
                    }
                }
            }
            match page.next_marker() {
                Some(next) if !next.is_empty() => marker = Some(next.to_owned()),
                _ => break,
            }
        }
        Ok(found)
    }

    async fn deregister(&self, target: &Target, registration: &TargetRegistration) -> Result<()> {
        let m = self.member(target).await?;
        m.elb
            .deregister_targets()
            .target_group_arn(&registration.target_group_arn)
            .targets(
                aws_sdk_elasticloadbalancingv2::types::TargetDescription::builder()
                    .id(&target.instance_id)
                    .set_port(registration.port)
                    .build(),
            )
            .send()
            .await
            .map_err(aws_err("elasticloadbalancing:DeregisterTargets"))?;
        Ok(())
    }

    async fn start_execution(
        &self,
        state_machine_arn: &str,
        name: &str,
        input: &str,
    ) -> Result<Started> {
        match self
            .sfn
            .start_execution()
            .state_machine_arn(state_machine_arn)
            .name(name)
            .input(input)
            .send()
            .await
        {
            Ok(out) => Ok(Started::Execution(out.execution_arn().to_owned())),
            Err(e) if code_of(&e) == "ExecutionAlreadyExists" => Ok(Started::AlreadyExists),
            Err(e) => Err(aws_err("states:StartExecution")(e)),
        }
    }

    async fn publish(&self, topic_arn: &str, subject: &str, message: &str) -> Result<()> {
        self.sns
            .publish()
            .topic_arn(topic_arn)
            .subject(subject)
            .message(message)
            .send()
            .await
            .map_err(aws_err("sns:Publish"))?;
        Ok(())
    }

    async fn get_object(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>> {
        let out = match self.s3.get_object().bucket(bucket).key(key).send().await {
            Ok(out) => out,
            Err(e) if matches!(code_of(&e), "NoSuchKey" | "NotFound") => return Ok(None),
            Err(e) => return Err(aws_err("s3:GetObject")(e)),
        };
        if out.content_length().is_some_and(|n| n > MAX_MANIFEST_BYTES) {
            return Err(Error::failed(format!(
                "s3://{bucket}/{key} is larger than a manifest can be"
            )));
        }
        let bytes = out.body.collect().await.map_err(|e| Error::Aws {
            operation: "s3:GetObject",
            message: format!("reading s3://{bucket}/{key}: {e}"),
            retryable: true,
        })?;
        Ok(Some(bytes.to_vec()))
    }

    async fn object_size(&self, bucket: &str, key: &str) -> Result<Option<u64>> {
        match self.s3.head_object().bucket(bucket).key(key).send().await {
            Ok(out) => Ok(out.content_length().and_then(|n| u64::try_from(n).ok())),
            Err(e)
                if matches!(code_of(&e), "NoSuchKey" | "NotFound")
                    || e.raw_response().is_some_and(|r| r.status().as_u16() == 404) =>
            {
                Ok(None)
            }
            Err(e) => Err(aws_err("s3:HeadObject")(e)),
        }
    }
}
