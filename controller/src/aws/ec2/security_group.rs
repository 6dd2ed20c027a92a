//! The two containment security groups (allow-all "untrack" and rule-less "isolation"), found or
//! created per VPC with exactly their rules, and the interfaces' membership in them.

use super::super::sts::Member;
use super::super::{aws_err, code_of};
use super::{filter, tag_spec};
use crate::error::{Error, Result};
use crate::model::MANAGED_TAG;
use aws_sdk_ec2::types as ec2t;
use std::collections::BTreeMap;

/// The group's id, created (tagged) if it does not exist, its rules made exactly "all traffic"
/// (`allow_all`) or none.
pub(in crate::aws) async fn ensure(
    m: &Member,
    vpc_id: &str,
    name: &str,
    allow_all: bool,
) -> Result<String> {
    let group = match find(m, vpc_id, name).await? {
        Some(group) => group,
        None => {
            let description = if allow_all {
                "airf: allows all traffic for a moment so existing connections become untracked before isolation"
            } else {
                "airf: isolation, no rules: no traffic in or out"
            };
            create(m, vpc_id, name, description).await?
        }
    };
    enforce_rules(m, &group, allow_all).await?;
    group
        .group_id()
        .map(str::to_owned)
        .ok_or_else(|| Error::failed("security group without id"))
}

/// ModifyNetworkInterfaceAttribute: the interface's groups become exactly `groups`.
pub(in crate::aws) async fn set_interface_groups(
    m: &Member,
    interface_id: &str,
    groups: &[String],
) -> Result<()> {
    m.ec2
        .modify_network_interface_attribute()
        .network_interface_id(interface_id)
        .set_groups(Some(groups.to_vec()))
        .send()
        .await
        .map_err(aws_err("ec2:ModifyNetworkInterfaceAttribute"))?;
    Ok(())
}

/// DescribeSecurityGroups: the group `name` in `vpc_id`, if it exists.
pub(super) async fn find(
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

/// CreateSecurityGroup (tagged `airf:managed=true`), then the group as EC2 describes it: with
/// the rules EC2 gives a new group.
pub(super) async fn create(
    m: &Member,
    vpc_id: &str,
    name: &str,
    description: &str,
) -> Result<ec2t::SecurityGroup> {
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
        // Created a moment ago by a parallel containment or isolation in the same VPC.
        Err(e) if code_of(&e) == "InvalidGroup.Duplicate" => {}
        Err(e) => return Err(aws_err("ec2:CreateSecurityGroup")(e)),
    }
    find(m, vpc_id, name).await?.ok_or_else(|| Error::Aws {
        operation: "ec2:DescribeSecurityGroups",
        message: format!("{name} not visible yet"),
        retryable: true,
    })
}

/// Makes the group's rules exactly "all traffic" (untrack) or none (isolation).
async fn enforce_rules(m: &Member, group: &ec2t::SecurityGroup, allow_all: bool) -> Result<()> {
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
    revoke_egress(m, id, group.ip_permissions_egress().to_vec()).await?;
    revoke_ingress(m, group).await
}

/// RevokeSecurityGroupEgress of these outbound rules of the group (none: no call).
pub(super) async fn revoke_egress(
    m: &Member,
    group_id: &str,
    rules: Vec<ec2t::IpPermission>,
) -> Result<()> {
    if rules.is_empty() {
        return Ok(());
    }
    m.ec2
        .revoke_security_group_egress()
        .group_id(group_id)
        .set_ip_permissions(Some(rules))
        .send()
        .await
        .map_err(aws_err("ec2:RevokeSecurityGroupEgress"))?;
    Ok(())
}

/// RevokeSecurityGroupIngress of every inbound rule the group has (none: no call).
pub(super) async fn revoke_ingress(m: &Member, group: &ec2t::SecurityGroup) -> Result<()> {
    if group.ip_permissions().is_empty() {
        return Ok(());
    }
    m.ec2
        .revoke_security_group_ingress()
        .group_id(group.group_id().unwrap_or_default())
        .set_ip_permissions(Some(group.ip_permissions().to_vec()))
        .send()
        .await
        .map_err(aws_err("ec2:RevokeSecurityGroupIngress"))?;
    Ok(())
}

fn all_traffic() -> ec2t::IpPermission {
    ec2t::IpPermission::builder()
        .ip_protocol("-1")
        .ip_ranges(ec2t::IpRange::builder().cidr_ip("0.0.0.0/0").build())
        .ipv6_ranges(ec2t::Ipv6Range::builder().cidr_ipv6("::/0").build())
        .build()
}
