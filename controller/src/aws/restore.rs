//! The calls that record and undo containment (release of a false positive): protection flags
//! read and set, the instance profile removed, airf's tags deleted, the instance put back into its
//! Auto Scaling group (its target groups: elbv2.rs), and the check that no acquisition is still
//! running.

use super::aws_err;
use super::sts::Member;
use crate::cloud::Protection;
use crate::error::{Error, Result};
use crate::model::Target;
use aws_sdk_ec2::types as ec2t;
use aws_sdk_ssm::types::CommandStatus;

/// DescribeInstanceAttribute, once per attribute (the API takes one at a time).
pub(super) async fn protection(m: &Member, target: &Target) -> Result<Protection> {
    let termination = m
        .ec2
        .describe_instance_attribute()
        .instance_id(&target.instance_id)
        .attribute(ec2t::InstanceAttributeName::DisableApiTermination)
        .send()
        .await
        .map_err(aws_err("ec2:DescribeInstanceAttribute"))?;
    let stop = m
        .ec2
        .describe_instance_attribute()
        .instance_id(&target.instance_id)
        .attribute(ec2t::InstanceAttributeName::DisableApiStop)
        .send()
        .await
        .map_err(aws_err("ec2:DescribeInstanceAttribute"))?;
    Ok(Protection {
        termination: termination
            .disable_api_termination()
            .and_then(|v| v.value())
            .unwrap_or(false),
        stop: stop
            .disable_api_stop()
            .and_then(|v| v.value())
            .unwrap_or(false),
    })
}

/// ModifyInstanceAttribute, once per attribute.
pub(super) async fn set_protection(
    m: &Member,
    target: &Target,
    protection: Protection,
) -> Result<()> {
    let value = |v: bool| ec2t::AttributeBooleanValue::builder().value(v).build();
    m.ec2
        .modify_instance_attribute()
        .instance_id(&target.instance_id)
        .disable_api_termination(value(protection.termination))
        .send()
        .await
        .map_err(aws_err("ec2:ModifyInstanceAttribute"))?;
    m.ec2
        .modify_instance_attribute()
        .instance_id(&target.instance_id)
        .disable_api_stop(value(protection.stop))
        .send()
        .await
        .map_err(aws_err("ec2:ModifyInstanceAttribute"))?;
    Ok(())
}

/// DisassociateIamInstanceProfile.
pub(super) async fn disassociate_profile(m: &Member, association_id: &str) -> Result<()> {
    m.ec2
        .disassociate_iam_instance_profile()
        .association_id(association_id)
        .send()
        .await
        .map_err(aws_err("ec2:DisassociateIamInstanceProfile"))?;
    Ok(())
}

/// DeleteTags on the instance: these keys, whatever their values.
pub(super) async fn untag_instance(m: &Member, target: &Target, keys: &[String]) -> Result<()> {
    if keys.is_empty() {
        return Ok(());
    }
    m.ec2
        .delete_tags()
        .resources(&target.instance_id)
        .set_tags(Some(
            keys.iter()
                .map(|k| ec2t::Tag::builder().key(k).build())
                .collect(),
        ))
        .send()
        .await
        .map_err(aws_err("ec2:DeleteTags"))?;
    Ok(())
}

/// AttachInstances (the group's desired capacity grows by one; it must stay within MaxSize).
pub(super) async fn attach(m: &Member, target: &Target, group: &str) -> Result<()> {
    m.autoscaling
        .attach_instances()
        .auto_scaling_group_name(group)
        .instance_ids(&target.instance_id)
        .send()
        .await
        .map_err(|e| match aws_err("autoscaling:AttachInstances")(e) {
            Error::Aws {
                operation,
                message,
                retryable,
            } => Error::Aws {
                operation,
                message: format!(
                    "{message} (attaching adds one to the group's desired capacity: if the group \
                     replaced this instance, raise its MaxSize or scale it in, then release again)"
                ),
                retryable,
            },
            other => other,
        })?;
    Ok(())
}

/// ListCommands of the instance (every page): those not finished, as (command id, document).
pub(super) async fn running_commands(m: &Member, target: &Target) -> Result<Vec<(String, String)>> {
    let mut found = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = m
            .ssm
            .list_commands()
            .instance_id(&target.instance_id)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(aws_err("ssm:ListCommands"))?;
        for c in page.commands() {
            if matches!(
                c.status(),
                Some(
                    CommandStatus::Pending | CommandStatus::InProgress | CommandStatus::Cancelling
                )
            ) {
                found.push((
                    c.command_id().unwrap_or_default().to_owned(),
                    c.document_name().unwrap_or_default().to_owned(),
                ));
            }
        }
        match page.next_token() {
            Some(next) if !next.is_empty() => token = Some(next.to_owned()),
            _ => break,
        }
    }
    Ok(found)
}
