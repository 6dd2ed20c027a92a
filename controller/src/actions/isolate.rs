//! Contain first, where the VPC allows it. Acquire-then-contain leaves the attacker connected for
//! as long as acquisition takes (hours for big disks). When the instance's VPC has the SSM and S3
//! endpoints (see [`reach`]), airf isolates the network before acquiring:
//!
//! - `isolation_plan` decides, records the decision on the instance (`airf:isolation`,
//!   `airf:isolation-reason`) and tells the responders why;
//! - `isolate` records what `release` needs ([`record`]), takes the instance out of its Auto
//!   Scaling group and target groups, then swaps its groups in two steps: first the allow-all
//!   `airf-untrack` group, so existing connections become untracked, then the per-VPC
//!   `airf-isolation-endpoints` group, whose only rules are outbound HTTPS to the endpoints, which
//!   drops them. The instance profile is left alone: prepare gives it the acquisition profile,
//!   which the agent needs to upload.
//!
//! After acquisition `contain` finishes the job as always: the closed `airf-isolation` group (again
//! through `airf-untrack`, as the endpoint connections are tracked), the deny-all profile, the
//! revocation, snapshots and the `Contain` tag.

use crate::actions::contain::{
    UNTRACK_GROUP, incomplete, leave_auto_scaling_group, leave_target_groups, swap_groups,
};
use crate::cloud::{Cloud, HttpsEgress};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::model::{InstanceFacts, Subject, tag_value};
use crate::notify::notify;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub mod reach;
pub mod record;

pub use reach::Decision;
pub use record::{Recorded, record_restore_state};

/// Per-VPC security group of contain-first isolation: outbound HTTPS to the endpoints only.
pub const ENDPOINTS_GROUP: &str = "airf-isolation-endpoints";
/// `contain-first` or `acquire-first`.
pub const ISOLATION_TAG: &str = "airf:isolation";
/// Why (at most 256 characters).
pub const ISOLATION_REASON_TAG: &str = "airf:isolation-reason";

/// Looks at the instance's VPC and decides.
async fn assess<C: Cloud>(cloud: &C, config: &Config, facts: &InstanceFacts) -> Result<Decision> {
    let target = &facts.target;
    let Some(vpc) = &facts.vpc_id else {
        return Ok(Decision {
            contain_first: false,
            reason: "acquire first: the instance is in no VPC".into(),
            notes: Vec::new(),
            egress: Vec::new(),
        });
    };
    let network = cloud.instance_network(target).await?;
    let endpoints = cloud.vpc_endpoints(target, vpc).await?;
    let ingress = cloud
        .group_ingress(target, &reach::groups_to_check(&endpoints, &target.region))
        .await?;
    let route_table = cloud
        .subnet_route_table(target, vpc, &network.subnet_id)
        .await?;
    let endpoints_group = cloud
        .security_group_id(target, vpc, ENDPOINTS_GROUP)
        .await?;
    Ok(reach::decide(&reach::Facts {
        region: &target.region,
        evidence_region: &config.evidence_region,
        network: &network,
        route_table: route_table.as_ref(),
        endpoints: &endpoints,
        ingress: &ingress,
        endpoints_group: endpoints_group.as_deref(),
    }))
}

/// `isolation_plan`: decides contain-first or acquire-first, records it on the instance and
/// notifies.
pub async fn isolation_plan<C: Cloud>(
    cloud: &C,
    config: &Config,
    case_id: &str,
    subject: &Subject,
) -> Result<Decision> {
    let target = &subject.target;
    let facts = super::instance(cloud, target).await?;
    let decision = assess(cloud, config, &facts).await?;
    let which = if decision.contain_first {
        "contain-first"
    } else {
        "acquire-first"
    };
    let tags = BTreeMap::from([
        (ISOLATION_TAG.to_owned(), which.to_owned()),
        (ISOLATION_REASON_TAG.to_owned(), tag_value(&decision.reason)),
    ]);
    cloud.tag_instance(target, &tags).await?;
    let mut body = decision.reason.clone();
    for note in &decision.notes {
        body.push_str(&format!("\nNote: {note}"));
    }
    let title = if decision.contain_first {
        "contain first: network isolated before acquisition"
    } else {
        "acquire first: the instance stays connected during acquisition"
    };
    notify(cloud, config, case_id, target, title, &body).await?;
    Ok(decision)
}

/// What `isolate` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Isolation {
    /// Steps done, in order.
    pub steps: Vec<String>,
    /// The endpoints-only group.
    pub endpoints_group: String,
    /// Its outbound rules.
    pub egress: Vec<HttpsEgress>,
    /// Whether the state to restore is recorded on the instance (else: release by hand).
    pub restore_recorded: bool,
}

/// `isolate`: contain-first network isolation.
pub async fn isolate<C: Cloud>(
    cloud: &C,
    config: &Config,
    case_id: &str,
    subject: &Subject,
) -> Result<Isolation> {
    let mut done = Isolation::default();
    match run(cloud, config, case_id, subject, &mut done).await {
        Ok(()) => {
            let rules: Vec<String> = done
                .egress
                .iter()
                .map(|r| match r {
                    HttpsEgress::Group(g) => format!("tcp/443 to {g}"),
                    HttpsEgress::PrefixList(p) => format!("tcp/443 to {p}"),
                })
                .collect();
            notify(
                cloud,
                config,
                case_id,
                &subject.target,
                "network isolated (contain first)",
                &format!(
                    "The instance can now reach only this VPC's SSM and S3 endpoints (group {}: {}).\n\
                     Next: acquisition through those endpoints, then full containment.\nSteps: {}.",
                    done.endpoints_group,
                    rules.join(", "),
                    done.steps.join("; ")
                ),
            )
            .await?;
            Ok(done)
        }
        Err(e) => Err(incomplete(
            "isolate",
            "contain-first isolation; ",
            &done.steps,
            e,
        )),
    }
}

async fn run<C: Cloud>(
    cloud: &C,
    config: &Config,
    case_id: &str,
    subject: &Subject,
    done: &mut Isolation,
) -> Result<()> {
    let target = &subject.target;
    let facts = super::instance(cloud, target).await?;
    let decision = assess(cloud, config, &facts).await?;
    if !decision.contain_first {
        return Err(Error::failed(format!(
            "cannot contain first: {}",
            decision.reason
        )));
    }
    let vpc = facts
        .vpc_id
        .clone()
        .ok_or_else(|| Error::failed("the instance is in no VPC"))?;
    if facts.interfaces.is_empty() {
        return Err(Error::failed(
            "the instance has no network interface to isolate",
        ));
    }

    match record_restore_state(cloud, config, case_id, &facts).await? {
        Recorded::Recorded(_) => {
            done.restore_recorded = true;
            done.steps
                .push("state to restore recorded on the instance".into());
        }
        Recorded::Kept(why) => {
            done.restore_recorded = true;
            done.steps.push(format!("state to restore kept ({why})"));
        }
        Recorded::NotRecorded(why) => {
            done.steps
                .push(format!("state to restore NOT recorded: {why}"));
        }
    }

    leave_auto_scaling_group(cloud, target, &mut done.steps).await?;
    leave_target_groups(cloud, target, &mut done.steps).await?;

    let untrack = cloud
        .ensure_security_group(target, &vpc, UNTRACK_GROUP, true)
        .await?;
    let endpoints = cloud
        .ensure_https_egress_group(target, &vpc, ENDPOINTS_GROUP, &decision.egress)
        .await?;
    done.endpoints_group = endpoints.clone();
    done.egress = decision.egress.clone();
    swap_groups(cloud, target, &facts, &untrack, &endpoints, &mut done.steps).await?;
    done.steps.push(format!(
        "network isolated to the VPC endpoints ({endpoints})"
    ));
    Ok(())
}

#[cfg(test)]
mod tests;
