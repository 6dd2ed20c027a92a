//! The route table of the instance's subnet, for the check that an instance outside the evidence
//! region has a way to that region's S3.

use super::super::aws_err;
use super::super::sts::Member;
use super::filter;
use crate::cloud::{Route, SubnetRoutes};
use crate::error::Result;
use crate::model::Target;
use aws_sdk_ec2::types as ec2t;

/// DescribeInstances (the subnet and VPC), then DescribeRouteTables: the table associated with
/// the subnet, else the VPC's main table (which serves every subnet without its own). None: the
/// instance is gone or in no subnet.
pub(in crate::aws) async fn of_instance(
    m: &Member,
    target: &Target,
) -> Result<Option<SubnetRoutes>> {
    let Some((subnet, vpc)) = super::describe_one(m, target)
        .await?
        .and_then(|i| Some((i.subnet_id()?.to_owned(), i.vpc_id()?.to_owned())))
    else {
        return Ok(None);
    };
    let own = m
        .ec2
        .describe_route_tables()
        .filters(filter("association.subnet-id", &subnet))
        .send()
        .await
        .map_err(aws_err("ec2:DescribeRouteTables"))?;
    let (table, main) = match own.route_tables().first() {
        Some(t) => (t.clone(), false),
        None => {
            let main = m
                .ec2
                .describe_route_tables()
                .filters(filter("vpc-id", &vpc))
                .filters(filter("association.main", "true"))
                .send()
                .await
                .map_err(aws_err("ec2:DescribeRouteTables"))?;
            match main.route_tables().first() {
                Some(t) => (t.clone(), true),
                None => return Ok(None),
            }
        }
    };
    Ok(Some(SubnetRoutes {
        subnet_id: subnet,
        route_table_id: table.route_table_id().unwrap_or_default().to_owned(),
        main,
        routes: table.routes().iter().filter_map(route).collect(),
    }))
}

fn route(r: &ec2t::Route) -> Option<Route> {
    let destination = r
        .destination_cidr_block()
        .or(r.destination_ipv6_cidr_block())
        .or(r.destination_prefix_list_id())?
        .to_owned();
    let target = [
        r.gateway_id(),
        r.nat_gateway_id(),
        r.transit_gateway_id(),
        r.vpc_peering_connection_id(),
        r.network_interface_id(),
        r.instance_id(),
        r.egress_only_internet_gateway_id(),
        r.local_gateway_id(),
        r.carrier_gateway_id(),
        r.core_network_arn(),
    ]
    .into_iter()
    .flatten()
    .next()
    .unwrap_or("unknown")
    .to_owned();
    Some(Route {
        destination,
        target,
        active: r.state() != Some(&ec2t::RouteState::Blackhole),
    })
}
