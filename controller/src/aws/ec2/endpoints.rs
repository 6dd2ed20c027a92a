//! What contain-first isolation needs to know about the instance's VPC (its endpoints, the route
//! table of the instance's subnet, the endpoints' inbound rules) and the one group it makes: the
//! per-VPC "endpoints only" group, whose only rules are outbound HTTPS to those endpoints.

use super::super::sts::Member;
use super::super::{aws_err, code_of};
use super::{filter, security_group};
use crate::cloud::{
    EndpointKind, HttpsEgress, IngressRule, InstanceNetwork, PrefixListRoute, RouteTable,
    VpcEndpoint,
};
use crate::error::{Error, Result};
use crate::model::Target;
use aws_sdk_ec2::types as ec2t;
use std::collections::BTreeSet;

/// DescribeInstances: the primary interface's subnet and private address.
pub(in crate::aws) async fn instance_network(
    m: &Member,
    target: &Target,
) -> Result<InstanceNetwork> {
    let inst = super::describe_one(m, target)
        .await?
        .ok_or_else(|| Error::failed(format!("instance {} not found", target.instance_id)))?;
    let subnet_id = inst.subnet_id().ok_or_else(|| {
        Error::failed(format!(
            "instance {} is in no subnet (not in a VPC)",
            target.instance_id
        ))
    })?;
    Ok(InstanceNetwork {
        subnet_id: subnet_id.to_owned(),
        private_ip: inst.private_ip_address().map(str::to_owned),
    })
}

/// DescribeVpcEndpoints of the VPC, every page.
pub(in crate::aws) async fn vpc_endpoints(m: &Member, vpc_id: &str) -> Result<Vec<VpcEndpoint>> {
    let mut found = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = m
            .ec2
            .describe_vpc_endpoints()
            .filters(filter("vpc-id", vpc_id))
            .set_next_token(token.take())
            .send()
            .await
            .map_err(aws_err("ec2:DescribeVpcEndpoints"))?;
        for e in page.vpc_endpoints() {
            let Some(id) = e.vpc_endpoint_id() else {
                continue;
            };
            found.push(VpcEndpoint {
                id: id.to_owned(),
                service_name: e.service_name().unwrap_or_default().to_owned(),
                kind: match e.vpc_endpoint_type() {
                    Some(ec2t::VpcEndpointType::Interface) => EndpointKind::Interface,
                    Some(ec2t::VpcEndpointType::Gateway) => EndpointKind::Gateway,
                    _ => EndpointKind::Other,
                },
                // AWS answers "available"; the SDK's enum spells it "Available".
                available: e
                    .state()
                    .is_some_and(|s| s.as_str().eq_ignore_ascii_case("available")),
                private_dns: e.private_dns_enabled().unwrap_or(false),
                security_groups: e
                    .groups()
                    .iter()
                    .filter_map(|g| g.group_id().map(str::to_owned))
                    .collect(),
                route_tables: e.route_table_ids().to_vec(),
                policy: e.policy_document().map(str::to_owned),
            });
        }
        match page.next_token() {
            Some(next) if !next.is_empty() => token = Some(next.to_owned()),
            _ => break,
        }
    }
    Ok(found)
}

/// DescribeRouteTables: the table explicitly associated with the subnet, else the VPC's main one.
pub(in crate::aws) async fn subnet_route_table(
    m: &Member,
    vpc_id: &str,
    subnet_id: &str,
) -> Result<Option<RouteTable>> {
    let out = m
        .ec2
        .describe_route_tables()
        .filters(filter("vpc-id", vpc_id))
        .send()
        .await
        .map_err(aws_err("ec2:DescribeRouteTables"))?;
    let tables = out.route_tables();
    let explicit = tables.iter().find(|t| {
        t.associations()
            .iter()
            .any(|a| a.subnet_id() == Some(subnet_id))
    });
    let main = || {
        tables
            .iter()
            .find(|t| t.associations().iter().any(|a| a.main() == Some(true)))
    };
    let Some(table) = explicit.or_else(main) else {
        return Ok(None);
    };
    Ok(Some(RouteTable {
        id: table.route_table_id().unwrap_or_default().to_owned(),
        prefix_list_routes: table
            .routes()
            .iter()
            .filter_map(|r| {
                Some(PrefixListRoute {
                    prefix_list_id: r.destination_prefix_list_id()?.to_owned(),
                    gateway_id: r.gateway_id()?.to_owned(),
                })
            })
            .collect(),
    }))
}

/// DescribeSecurityGroups: the inbound rules of these groups, one per IpPermission.
pub(in crate::aws) async fn group_ingress(
    m: &Member,
    group_ids: &[String],
) -> Result<Vec<IngressRule>> {
    if group_ids.is_empty() {
        return Ok(Vec::new());
    }
    let out = match m
        .ec2
        .describe_security_groups()
        .set_group_ids(Some(group_ids.to_vec()))
        .send()
        .await
    {
        Ok(out) => out,
        // A group deleted since DescribeVpcEndpoints: it admits nothing.
        Err(e) if code_of(&e) == "InvalidGroup.NotFound" => return Ok(Vec::new()),
        Err(e) => return Err(aws_err("ec2:DescribeSecurityGroups")(e)),
    };
    let mut rules = Vec::new();
    for g in out.security_groups() {
        let group_id = g.group_id().unwrap_or_default();
        for p in g.ip_permissions() {
            rules.push(IngressRule {
                group_id: group_id.to_owned(),
                protocol: p.ip_protocol().unwrap_or("-1").to_owned(),
                from_port: p.from_port(),
                to_port: p.to_port(),
                cidrs: p
                    .ip_ranges()
                    .iter()
                    .filter_map(|r| r.cidr_ip().map(str::to_owned))
                    .collect(),
                source_groups: p
                    .user_id_group_pairs()
                    .iter()
                    .filter_map(|u| u.group_id().map(str::to_owned))
                    .collect(),
            });
        }
    }
    Ok(rules)
}

/// DescribeSecurityGroups: the id of the group `name` in `vpc_id`.
pub(in crate::aws) async fn security_group_id(
    m: &Member,
    vpc_id: &str,
    name: &str,
) -> Result<Option<String>> {
    Ok(security_group::find(m, vpc_id, name)
        .await?
        .and_then(|g| g.group_id().map(str::to_owned)))
}

/// The group with exactly `egress` (TCP 443) outbound and nothing inbound, created if missing.
/// A new group comes with AWS's default "all traffic out" rule: revoked here like any other rule
/// that is not in `egress`.
pub(in crate::aws) async fn ensure_https_egress_group(
    m: &Member,
    vpc_id: &str,
    name: &str,
    egress: &[HttpsEgress],
) -> Result<String> {
    let group = match security_group::find(m, vpc_id, name).await? {
        Some(g) => g,
        None => {
            security_group::create(
                m,
                vpc_id,
                name,
                "airf: contain-first isolation, only HTTPS to this VPC's SSM and S3 endpoints",
            )
            .await?
        }
    };
    let id = group
        .group_id()
        .ok_or_else(|| Error::failed("security group without id"))?
        .to_owned();
    let wanted: BTreeSet<&HttpsEgress> = egress.iter().collect();
    let mut present: BTreeSet<HttpsEgress> = BTreeSet::new();
    let mut extra: Vec<ec2t::IpPermission> = Vec::new();
    for p in group.ip_permissions_egress() {
        let https = p.ip_protocol() == Some("tcp")
            && p.from_port() == Some(443)
            && p.to_port() == Some(443);
        let mut dropped_groups = Vec::new();
        for pair in p.user_id_group_pairs() {
            let rule = pair.group_id().map(|g| HttpsEgress::Group(g.to_owned()));
            match rule {
                Some(r) if https && wanted.contains(&r) => {
                    present.insert(r);
                }
                _ => dropped_groups.push(pair.clone()),
            }
        }
        let mut dropped_lists = Vec::new();
        for pl in p.prefix_list_ids() {
            let rule = pl
                .prefix_list_id()
                .map(|l| HttpsEgress::PrefixList(l.to_owned()));
            match rule {
                Some(r) if https && wanted.contains(&r) => {
                    present.insert(r);
                }
                _ => dropped_lists.push(pl.clone()),
            }
        }
        // Everything of this permission that is not wanted is revoked: address ranges always,
        // groups and prefix lists not in `egress`.
        if !p.ip_ranges().is_empty()
            || !p.ipv6_ranges().is_empty()
            || !dropped_groups.is_empty()
            || !dropped_lists.is_empty()
        {
            extra.push(
                ec2t::IpPermission::builder()
                    .set_ip_protocol(p.ip_protocol().map(str::to_owned))
                    .set_from_port(p.from_port())
                    .set_to_port(p.to_port())
                    .set_ip_ranges(Some(p.ip_ranges().to_vec()).filter(|v| !v.is_empty()))
                    .set_ipv6_ranges(Some(p.ipv6_ranges().to_vec()).filter(|v| !v.is_empty()))
                    .set_user_id_group_pairs(Some(dropped_groups).filter(|v| !v.is_empty()))
                    .set_prefix_list_ids(Some(dropped_lists).filter(|v| !v.is_empty()))
                    .build(),
            );
        }
    }
    security_group::revoke_egress(m, &id, extra).await?;
    security_group::revoke_ingress(m, &group).await?;
    let missing: Vec<&HttpsEgress> = wanted
        .into_iter()
        .filter(|r| !present.contains(*r))
        .collect();
    if !missing.is_empty() {
        let mut permission = ec2t::IpPermission::builder()
            .ip_protocol("tcp")
            .from_port(443)
            .to_port(443);
        for rule in missing {
            permission = match rule {
                HttpsEgress::Group(g) => permission.user_id_group_pairs(
                    ec2t::UserIdGroupPair::builder()
                        .group_id(g)
                        .description("airf: HTTPS to an SSM/S3 interface endpoint")
                        .build(),
                ),
                HttpsEgress::PrefixList(l) => permission.prefix_list_ids(
                    ec2t::PrefixListId::builder()
                        .prefix_list_id(l)
                        .description("airf: HTTPS to the S3 gateway endpoint")
                        .build(),
                ),
            };
        }
        match m
            .ec2
            .authorize_security_group_egress()
            .group_id(&id)
            .ip_permissions(permission.build())
            .send()
            .await
        {
            Ok(_) => {}
            // A parallel isolation in the same VPC added it a moment ago.
            Err(e) if code_of(&e) == "InvalidPermission.Duplicate" => {}
            Err(e) => return Err(aws_err("ec2:AuthorizeSecurityGroupEgress")(e)),
        }
    }
    Ok(id)
}
