//! EC2 Auto Scaling, in the member account: taking the instance out of its group before the group
//! sees it isolated, calls it unhealthy and terminates it with the evidence.

use super::aws_err;
use super::sts::Member;
use crate::error::Result;
use crate::model::Target;

/// DescribeAutoScalingInstances: the instance's group, if any.
pub(super) async fn auto_scaling_group(m: &Member, target: &Target) -> Result<Option<String>> {
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

/// DetachInstances, keeping the desired capacity so the group launches a replacement.
pub(super) async fn detach(m: &Member, target: &Target, group: &str) -> Result<()> {
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
