//! A web server as a fleet runs one: launched by an Auto Scaling group and registered in a target
//! group, so containment has to take it out of both and release to put it back.

use anyhow::{Context, Result};
use aws_sdk_autoscaling::types::LaunchTemplateSpecification;
use aws_sdk_ec2::types as ec2t;
use aws_sdk_elasticloadbalancingv2::types::{ProtocolEnum, TargetDescription};

use crate::emulator::{Emulator, SUSPECT_PROFILE, sdk};

/// The Auto Scaling group [`Emulator::auto_scaled_web_server`] makes.
pub const AUTO_SCALING_GROUP: &str = "web-asg";

impl Emulator {
    /// A web server launched by the Auto Scaling group `web-asg` (launch template `web`, profile
    /// WebServer), registered in the target group `web` on port 80: (instance, target group ARN).
    pub fn auto_scaled_web_server(&self) -> Result<(String, String)> {
        let (id, tg) = self.rt.block_on(async {
            let ami = self.ami().await?;
            sdk(self
                .ec2
                .create_launch_template()
                .launch_template_name("web")
                .launch_template_data(
                    ec2t::RequestLaunchTemplateData::builder()
                        .image_id(ami)
                        .instance_type(ec2t::InstanceType::T3Micro)
                        .iam_instance_profile(
                            ec2t::LaunchTemplateIamInstanceProfileSpecificationRequest::builder()
                                .name(SUSPECT_PROFILE)
                                .build(),
                        )
                        .build(),
                )
                .send()
                .await)
            .context("CreateLaunchTemplate")?;
            sdk(self
                .autoscaling
                .create_auto_scaling_group()
                .auto_scaling_group_name(AUTO_SCALING_GROUP)
                .launch_template(
                    LaunchTemplateSpecification::builder()
                        .launch_template_name("web")
                        .build(),
                )
                .min_size(1)
                .max_size(2)
                .desired_capacity(1)
                .vpc_zone_identifier(&self.subnet)
                .send()
                .await)
            .context("CreateAutoScalingGroup")?;
            let groups = sdk(self
                .autoscaling
                .describe_auto_scaling_groups()
                .auto_scaling_group_names(AUTO_SCALING_GROUP)
                .send()
                .await)?;
            let id = groups
                .auto_scaling_groups()
                .first()
                .and_then(|g| g.instances().first())
                .and_then(|i| i.instance_id())
                .context("the group launched no instance")?
                .to_owned();
            let tg = sdk(self
                .elb
                .create_target_group()
                .name("web")
                .protocol(ProtocolEnum::Http)
                .port(80)
                .vpc_id(&self.vpc)
                .send()
                .await)
            .context("CreateTargetGroup")?
            .target_groups()
            .first()
            .and_then(|t| t.target_group_arn())
            .context("target group")?
            .to_owned();
            sdk(self
                .elb
                .register_targets()
                .target_group_arn(&tg)
                .targets(TargetDescription::builder().id(&id).port(80).build())
                .send()
                .await)
            .context("RegisterTargets")?;
            anyhow::Ok((id, tg))
        })?;
        // AWS associates the launch template's profile; moto does not for group-launched
        // instances.
        if self.profile(&id)?.is_none() {
            sdk(self.rt.block_on(
                self.ec2
                    .associate_iam_instance_profile()
                    .instance_id(&id)
                    .iam_instance_profile(
                        ec2t::IamInstanceProfileSpecification::builder()
                            .name(SUSPECT_PROFILE)
                            .build(),
                    )
                    .send(),
            ))?;
        }
        Ok((id, tg))
    }
}
