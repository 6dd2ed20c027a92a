//! Whether an instance can be isolated *before* acquisition: the pure decision, from facts about
//! its VPC. After isolation the instance may only talk HTTPS to the VPC's endpoints, so the SSM
//! Agent and the evidence upload must work through them alone:
//!
//! - interface endpoints for `ssm`, `ssmmessages` and `ec2messages` of the instance's region,
//!   available and with private DNS on (the agent uses the services' public names);
//! - a path to S3: a gateway endpoint routed in the route table of the instance's subnet (its
//!   prefix list), or an S3 interface endpoint with private DNS;
//! - the evidence bucket in the instance's region (endpoints reach their own region's S3 only);
//! - each interface endpoint's security groups admitting TCP 443 from the instance: a rule from a
//!   CIDR holding its private address, or from the `airf-isolation-endpoints` group itself (a rule
//!   on another of the instance's groups would stop matching once those groups are swapped out).
//!
//! Anything missing is named in the reason, and airf acquires first, as before.

use crate::cloud::{
    EndpointKind, HttpsEgress, IngressRule, InstanceNetwork, RouteTable, VpcEndpoint,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// The interface endpoints the SSM Agent needs.
pub const SSM_SERVICES: [&str; 3] = ["ssm", "ssmmessages", "ec2messages"];

/// What was learnt about the instance's VPC.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// The instance's region.
    pub region: &'a str,
    /// The evidence (and artifact) buckets' region.
    pub evidence_region: &'a str,
    /// The primary interface's subnet and address.
    pub network: &'a InstanceNetwork,
    /// The subnet's route table.
    pub route_table: Option<&'a RouteTable>,
    /// The VPC's endpoints.
    pub endpoints: &'a [VpcEndpoint],
    /// Inbound rules of the groups [`groups_to_check`] named.
    pub ingress: &'a [IngressRule],
    /// Id of `airf-isolation-endpoints` in the VPC, if it exists (rules may name it as a source).
    pub endpoints_group: Option<&'a str>,
}

/// The decision, recorded in the case and notified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Isolate before acquiring.
    pub contain_first: bool,
    /// Why; when acquiring first, everything that is missing.
    pub reason: String,
    /// Things the decision could not check (custom endpoint policies).
    pub notes: Vec<String>,
    /// The endpoints group's outbound rules (TCP 443), when containing first.
    pub egress: Vec<HttpsEgress>,
}

/// `ssm` for `com.amazonaws.<region>.ssm` (or `cn.com.amazonaws.<region>.ssm`).
pub fn service_of<'a>(service_name: &'a str, region: &str) -> Option<&'a str> {
    service_name
        .strip_prefix("com.amazonaws.")
        .or_else(|| service_name.strip_prefix("cn.com.amazonaws."))?
        .strip_prefix(region)?
        .strip_prefix('.')
}

/// Whether `ip` is in the IPv4 `cidr` (`a.b.c.d/n`); false for anything that does not parse.
pub fn cidr_contains(cidr: &str, ip: Ipv4Addr) -> bool {
    let Some((net, len)) = cidr.split_once('/') else {
        return false;
    };
    let (Ok(net), Ok(len)) = (net.parse::<Ipv4Addr>(), len.parse::<u32>()) else {
        return false;
    };
    if len > 32 {
        return false;
    }
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    u32::from(net) & mask == u32::from(ip) & mask
}

/// Whether an endpoint policy is AWS's default full access (absent, or one Allow of everything
/// to everyone without conditions). Any other policy airf cannot evaluate here.
pub fn policy_is_full_access(policy: Option<&str>) -> bool {
    let Some(text) = policy else {
        return true;
    };
    let Ok(doc) = serde_json::from_str::<Value>(text) else {
        return false;
    };
    let statements = match doc.get("Statement") {
        Some(Value::Array(s)) => s.clone(),
        Some(s @ Value::Object(_)) => vec![s.clone()],
        _ => return false,
    };
    let star = |v: Option<&Value>| match v {
        Some(Value::String(s)) => s == "*",
        Some(Value::Array(a)) => a.iter().any(|x| x == "*"),
        _ => false,
    };
    let everyone = |p: Option<&Value>| star(p) || star(p.and_then(|p| p.get("AWS")));
    statements
        .iter()
        .all(|s| s.get("Effect").and_then(Value::as_str) == Some("Allow"))
        && statements.iter().any(|s| {
            everyone(s.get("Principal"))
                && star(s.get("Action"))
                && star(s.get("Resource"))
                && s.get("Condition").is_none()
        })
}

fn usable_interface(e: &VpcEndpoint) -> bool {
    e.kind == EndpointKind::Interface && e.available && e.private_dns
}

fn endpoints_of<'a>(
    endpoints: &'a [VpcEndpoint],
    region: &'a str,
    service: &'a str,
) -> impl Iterator<Item = &'a VpcEndpoint> {
    endpoints
        .iter()
        .filter(move |e| service_of(&e.service_name, region) == Some(service))
}

/// The security groups whose inbound rules [`decide`] needs: those of the usable SSM and S3
/// interface endpoints.
pub fn groups_to_check(endpoints: &[VpcEndpoint], region: &str) -> Vec<String> {
    let mut groups: BTreeSet<String> = BTreeSet::new();
    for service in SSM_SERVICES.iter().chain(&["s3"]) {
        for e in endpoints_of(endpoints, region, service).filter(|e| usable_interface(e)) {
            groups.extend(e.security_groups.iter().cloned());
        }
    }
    groups.into_iter().collect()
}

fn https(rule: &IngressRule) -> bool {
    match rule.protocol.as_str() {
        "-1" => true,
        "tcp" | "6" => {
            rule.from_port.is_none_or(|p| p <= 443) && rule.to_port.is_none_or(|p| p >= 443)
        }
        _ => false,
    }
}

/// Whether the endpoint's groups admit HTTPS from `ip` or from the endpoints group.
fn admits(e: &VpcEndpoint, f: &Facts, ip: Option<Ipv4Addr>) -> bool {
    f.ingress.iter().any(|r| {
        e.security_groups.contains(&r.group_id)
            && https(r)
            && (ip.is_some_and(|ip| r.cidrs.iter().any(|c| cidr_contains(c, ip)))
                || f.endpoints_group
                    .is_some_and(|g| r.source_groups.iter().any(|s| s == g)))
    })
}

/// Decides contain-first or acquire-first.
pub fn decide(f: &Facts) -> Decision {
    let mut missing: Vec<String> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let mut egress: BTreeSet<HttpsEgress> = BTreeSet::new();
    let region = f.region;
    if f.evidence_region != region {
        missing.push(format!(
            "the evidence bucket is in {}, the instance in {region} (VPC endpoints reach only their own \
             region's S3)",
            f.evidence_region
        ));
    }
    let ip = f
        .network
        .private_ip
        .as_deref()
        .and_then(|ip| ip.parse::<Ipv4Addr>().ok());
    if ip.is_none() {
        missing.push("the instance has no private IPv4 address".into());
    }
    let note_policy = |e: &VpcEndpoint, service: &str, notes: &mut Vec<String>| {
        if !policy_is_full_access(e.policy.as_deref()) {
            notes.push(format!(
                "{} ({service}) has a custom endpoint policy that airf does not evaluate: if it refuses \
                 the SSM Agent or the evidence and artifact buckets, acquisition fails while the \
                 instance stays isolated",
                e.id
            ));
        }
    };
    let admits_hint = |e: &VpcEndpoint, service: &str| {
        format!(
            "the security groups of {} ({service}) admit no TCP 443 from {} (add an inbound rule from \
             the subnet's CIDR, or from the group airf-isolation-endpoints)",
            e.id,
            f.network.private_ip.as_deref().unwrap_or("the instance")
        )
    };
    for service in SSM_SERVICES {
        let all: Vec<&VpcEndpoint> = endpoints_of(f.endpoints, region, service)
            .filter(|e| e.kind == EndpointKind::Interface)
            .collect();
        let Some(first) = all.first() else {
            missing.push(format!(
                "no interface endpoint for com.amazonaws.{region}.{service}"
            ));
            continue;
        };
        let usable: Vec<&&VpcEndpoint> = all.iter().filter(|e| usable_interface(e)).collect();
        let Some(e) = usable.iter().find(|e| admits(e, f, ip)) else {
            missing.push(match usable.first() {
                None if !first.available => format!("{} ({service}) is not available", first.id),
                None => format!("{} ({service}) has private DNS off", first.id),
                Some(e) => admits_hint(e, service),
            });
            continue;
        };
        note_policy(e, service, &mut notes);
        egress.extend(e.security_groups.iter().cloned().map(HttpsEgress::Group));
    }
    // S3: a gateway endpoint routed from the subnet, else an interface endpoint.
    let routed = endpoints_of(f.endpoints, region, "s3")
        .filter(|e| e.kind == EndpointKind::Gateway && e.available)
        .find_map(|e| {
            let route = f
                .route_table?
                .prefix_list_routes
                .iter()
                .find(|r| r.gateway_id == e.id)?;
            Some((e, route.prefix_list_id.clone()))
        });
    let s3_interfaces: Vec<&VpcEndpoint> = endpoints_of(f.endpoints, region, "s3")
        .filter(|e| usable_interface(e))
        .collect();
    if let Some((e, prefix_list)) = routed {
        note_policy(e, "s3", &mut notes);
        egress.insert(HttpsEgress::PrefixList(prefix_list));
    } else if let Some(e) = s3_interfaces.iter().find(|e| admits(e, f, ip)) {
        note_policy(e, "s3", &mut notes);
        egress.extend(e.security_groups.iter().cloned().map(HttpsEgress::Group));
    } else {
        let table = f
            .route_table
            .map(|t| format!("route table {}", t.id))
            .unwrap_or_else(|| "no route table".into());
        missing.push(match s3_interfaces.first() {
            Some(e) => admits_hint(e, "s3"),
            None => format!(
                "no path to S3: no gateway endpoint for com.amazonaws.{region}.s3 routed in {table} of \
                 subnet {}, and no S3 interface endpoint with private DNS",
                f.network.subnet_id
            ),
        });
    }
    if missing.is_empty() {
        Decision {
            contain_first: true,
            reason: format!(
                "contain first: the VPC has interface endpoints for ssm, ssmmessages and ec2messages and \
                 a path to S3 in {region} that the instance reaches over HTTPS; it is isolated to them \
                 before acquisition"
            ),
            notes,
            egress: egress.into_iter().collect(),
        }
    } else {
        Decision {
            contain_first: false,
            reason: format!(
                "acquire first (the instance stays connected until acquisition ends): {}",
                missing.join("; ")
            ),
            notes,
            egress: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests;
