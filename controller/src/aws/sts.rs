//! The member role: assumed through STS per account and region, its clients cached until
//! shortly before the credentials expire, so a workflow's many steps do not each assume it.

use super::{AwsCloud, aws_err};
use crate::error::{Error, Result};
use crate::model::{Target, partition};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_types::region::Region;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Clients in one member account and region, on the member role's credentials.
#[derive(Debug)]
pub(super) struct Member {
    pub(super) ec2: aws_sdk_ec2::Client,
    pub(super) iam: aws_sdk_iam::Client,
    pub(super) ssm: aws_sdk_ssm::Client,
    pub(super) autoscaling: aws_sdk_autoscaling::Client,
    pub(super) elb: aws_sdk_elasticloadbalancingv2::Client,
    pub(super) cloudtrail: aws_sdk_cloudtrail::Client,
    expires: SystemTime,
}

impl AwsCloud {
    /// The clients for the target's account and region, assuming the member role when there are
    /// none yet or their credentials expire within five minutes.
    pub(super) async fn member(&self, target: &Target) -> Result<Arc<Member>> {
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
            cloudtrail: aws_sdk_cloudtrail::Client::new(&conf),
            expires,
        });
        members.insert(key, member.clone());
        Ok(member)
    }
}

/// GetCallerIdentity: the controller's own principal (its role's session), named in the custody
/// log. It needs no permission (IAM User Guide, "GetCallerIdentity").
pub(super) async fn caller_arn(cloud: &AwsCloud) -> Result<String> {
    let out = cloud
        .sts
        .get_caller_identity()
        .send()
        .await
        .map_err(aws_err("sts:GetCallerIdentity"))?;
    out.arn()
        .map(str::to_owned)
        .ok_or_else(|| Error::failed("sts:GetCallerIdentity returned no ARN"))
}
