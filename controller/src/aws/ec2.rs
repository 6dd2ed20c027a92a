//! EC2, in the member account: what the instance is (state, tags, network, volumes, instance
//! profile) and the changes made to the instance itself. Security groups and snapshots have
//! their own modules.

pub(super) mod endpoints;
pub(super) mod route_table;
pub(super) mod security_group;
pub(super) mod snapshot;

use super::sts::Member;
use super::{aws_err, code_of};
use crate::cloud::ProtectionKind;
use crate::error::Result;
use crate::model::{InstanceFacts, InstanceState, Interface, ProfileAssociation, Target, Volume};
use aws_sdk_ec2::types as ec2t;
use std::collections::BTreeMap;

/// DescribeInstances of the target alone, any error as AWS sends it. None: EC2 did not list it.
pub(super) async fn describe_one(m: &Member, target: &Target) -> Result<Option<ec2t::Instance>> {
    let out = m
        .ec2
        .describe_instances()
        .instance_ids(&target.instance_id)
        .send()
        .await
        .map_err(aws_err("ec2:DescribeInstances"))?;
    Ok(out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .find(|i| i.instance_id() == Some(target.instance_id.as_str()))
        .cloned())
}

/// DescribeInstances + DescribeIamInstanceProfileAssociations. None: no such instance.
pub(super) async fn describe_instance(
    m: &Member,
    target: &Target,
) -> Result<Option<InstanceFacts>> {
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

/// CreateTags on the instance.
pub(super) async fn tag_instance(
    m: &Member,
    target: &Target,
    tags: &BTreeMap<String, String>,
) -> Result<()> {
    m.ec2
        .create_tags()
        .resources(&target.instance_id)
        .set_tags(Some(sdk_tags(tags)))
        .send()
        .await
        .map_err(aws_err("ec2:CreateTags"))?;
    Ok(())
}

/// AssociateIamInstanceProfile.
pub(super) async fn associate_profile(
    m: &Member,
    target: &Target,
    profile_name: &str,
) -> Result<()> {
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

/// ReplaceIamInstanceProfileAssociation.
pub(super) async fn replace_profile(
    m: &Member,
    association_id: &str,
    profile_name: &str,
) -> Result<()> {
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

/// ModifyInstanceAttribute: one protection on (EC2 takes one attribute per call). On a Spot
/// instance EC2 answers `UnsupportedOperation`, which the caller records as refused.
pub(super) async fn protect(m: &Member, target: &Target, protection: ProtectionKind) -> Result<()> {
    let yes = ec2t::AttributeBooleanValue::builder().value(true).build();
    let call = m
        .ec2
        .modify_instance_attribute()
        .instance_id(&target.instance_id);
    let call = match protection {
        ProtectionKind::Termination => call.disable_api_termination(yes),
        ProtectionKind::Stop => call.disable_api_stop(yes),
    };
    call.send()
        .await
        .map_err(aws_err("ec2:ModifyInstanceAttribute"))?;
    Ok(())
}

/// ModifyInstanceAttribute: DeleteOnTermination=false for these devices.
pub(super) async fn keep_volumes(m: &Member, target: &Target, devices: &[String]) -> Result<()> {
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

fn sdk_tags(tags: &BTreeMap<String, String>) -> Vec<ec2t::Tag> {
    tags.iter()
        .map(|(k, v)| ec2t::Tag::builder().key(k).value(v).build())
        .collect()
}

/// Tags for a resource at its creation.
fn tag_spec(kind: ec2t::ResourceType, tags: &BTreeMap<String, String>) -> ec2t::TagSpecification {
    ec2t::TagSpecification::builder()
        .resource_type(kind)
        .set_tags(Some(sdk_tags(tags)))
        .build()
}

fn filter(name: &str, value: &str) -> ec2t::Filter {
    ec2t::Filter::builder().name(name).values(value).build()
}
