//! Elastic Load Balancing (v2), in the member account: finding and removing the instance's
//! target-group registrations, so no more requests reach it, and putting them back at release.

use super::aws_err;
use super::sts::Member;
use crate::cloud::TargetRegistration;
use crate::error::Result;
use crate::model::Target;
use aws_sdk_elasticloadbalancingv2::types::{TargetDescription, TargetTypeEnum};

/// DescribeTargetGroups (every page) + DescribeTargetHealth of each instance-type group.
pub(super) async fn target_registrations(
    m: &Member,
    target: &Target,
) -> Result<Vec<TargetRegistration>> {
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
            if group
                .target_type()
                .is_some_and(|t| *t != TargetTypeEnum::Instance)
            {
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

/// DeregisterTargets: the one registration.
pub(super) async fn deregister(
    m: &Member,
    target: &Target,
    registration: &TargetRegistration,
) -> Result<()> {
    m.elb
        .deregister_targets()
        .target_group_arn(&registration.target_group_arn)
        .targets(description(target, registration))
        .send()
        .await
        .map_err(aws_err("elasticloadbalancing:DeregisterTargets"))?;
    Ok(())
}

/// RegisterTargets: the one registration, as [`deregister`] removed it (release).
pub(super) async fn register(
    m: &Member,
    target: &Target,
    registration: &TargetRegistration,
) -> Result<()> {
    m.elb
        .register_targets()
        .target_group_arn(&registration.target_group_arn)
        .targets(description(target, registration))
        .send()
        .await
        .map_err(aws_err("elasticloadbalancing:RegisterTargets"))?;
    Ok(())
}

/// The instance on the registration's port (None: the group's port).
fn description(target: &Target, registration: &TargetRegistration) -> TargetDescription {
    TargetDescription::builder()
        .id(&target.instance_id)
        .set_port(registration.port)
        .build()
}
