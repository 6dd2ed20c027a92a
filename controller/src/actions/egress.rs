//! Whether an instance outside the evidence region has a way to that region's S3, checked before
//! `prepare` changes anything. The SSM documents download the agent from, and the agent uploads
//! to, S3 in the evidence region wherever the instance runs; an S3 gateway endpoint serves only
//! its own region's buckets. Without a route out of its VPC, the acquisition would start, fail
//! minutes later at the download with "agent not downloaded", and leave a swapped instance
//! profile behind: failing here names the cause and changes nothing.
//!
//! Only a certain absence fails. A default route through an internet gateway, a NAT gateway, a
//! NAT instance, a virtual private gateway or a Transit Gateway leads out (the last two to
//! egress the controller cannot see, which it trusts); any route to a Transit Gateway or a
//! peering connection may lead to an S3 interface endpoint of the evidence region, which the
//! controller cannot verify either, so that too is accepted.

use crate::cloud::{Route, SubnetRoutes};

/// Targets through which a default route leaves the VPC.
const EGRESS: &[&str] = &["igw-", "nat-", "tgw-", "vgw-", "eni-", "i-", "arn:"];
/// Targets that may lead to another VPC with an S3 interface endpoint of the evidence region.
const PEERED: &[&str] = &["tgw-", "pcx-", "vgw-", "arn:"];

fn goes(route: &Route, prefixes: &[&str]) -> bool {
    route.active && prefixes.iter().any(|p| route.target.starts_with(p))
}

/// Ok when the subnet has a way out of its VPC; else why not and the fixes.
pub fn check(
    routes: &SubnetRoutes,
    instance_id: &str,
    instance_region: &str,
    evidence_region: &str,
) -> Result<(), String> {
    let out = routes
        .routes
        .iter()
        .any(|r| r.destination == "0.0.0.0/0" && goes(r, EGRESS));
    let peered = routes.routes.iter().any(|r| goes(r, PEERED));
    if out || peered {
        return Ok(());
    }
    Err(format!(
        "{instance_id} runs in {instance_region} and its evidence goes to S3 in {evidence_region}, but its \
         subnet {} (route table {}{}) has no route out of its VPC: no 0.0.0.0/0 through an internet or NAT \
         gateway, no Transit Gateway or peering route (an S3 gateway endpoint serves only its own region). \
         Nothing was changed. Fix one: add a NAT gateway route for the subnet; or reach an S3 interface \
         endpoint of {evidence_region} over peering or Transit Gateway, with its DNS; or deploy an evidence \
         bucket in {instance_region} and investigate this instance with that deployment",
        routes.subnet_id,
        routes.route_table_id,
        if routes.main {
            ", the VPC's main table"
        } else {
            ""
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(routes: &[(&str, &str, bool)]) -> SubnetRoutes {
        SubnetRoutes {
            subnet_id: "subnet-1".into(),
            route_table_id: "rtb-1".into(),
            main: true,
            routes: routes
                .iter()
                .map(|(d, t, active)| Route {
                    destination: (*d).into(),
                    target: (*t).into(),
                    active: *active,
                })
                .collect(),
        }
    }

    const LOCAL: (&str, &str, bool) = ("10.0.0.0/16", "local", true);

    #[test]
    fn a_way_out_passes() {
        for way in [
            ("0.0.0.0/0", "igw-1", true),
            ("0.0.0.0/0", "nat-1", true),
            ("0.0.0.0/0", "tgw-1", true),
            ("0.0.0.0/0", "eni-1", true),
            ("10.9.0.0/16", "pcx-1", true),
            ("10.9.0.0/16", "tgw-1", true),
        ] {
            assert_eq!(
                check(&table(&[LOCAL, way]), "i-1", "eu-west-1", "us-east-1"),
                Ok(()),
                "{way:?}"
            );
        }
    }

    #[test]
    fn no_way_out_fails_naming_the_fixes() {
        for routes in [
            vec![LOCAL],
            // A gateway endpoint serves its own region's S3 only.
            vec![LOCAL, ("pl-63a5400a", "vpce-1", true)],
            // A route whose NAT gateway was deleted leads nowhere.
            vec![LOCAL, ("0.0.0.0/0", "nat-1", false)],
            vec![LOCAL, ("::/0", "eigw-1", true)],
        ] {
            let why = check(&table(&routes), "i-1", "eu-west-1", "us-east-1").unwrap_err();
            assert!(
                why.contains("subnet-1")
                    && why.contains("NAT gateway")
                    && why.contains("evidence bucket in eu-west-1"),
                "{why}"
            );
        }
    }

    /// `prepare` checks before it changes anything: no profile swap, no notification.
    #[tokio::test]
    async fn prepare_refuses_an_instance_with_no_way_to_the_evidence_region_and_changes_nothing() {
        let cloud = crate::fake::FakeCloud::with(crate::fake::facts("i-0123456789abcdef0"));
        cloud.lock().subnet_routes = Some(table(&[LOCAL]));
        let subject = crate::model::Subject {
            target: crate::fake::facts("i-0123456789abcdef0").target,
            claim: 1,
        };
        let config = crate::config::test_config();
        assert_ne!(subject.target.region, config.evidence_region);
        let e = crate::actions::prepare::prepare(&cloud, &config, "IR-1", &subject)
            .await
            .unwrap_err();
        assert!(
            matches!(&e, crate::Error::Failed(m) if m.contains("no route out of its VPC")),
            "{e:?}"
        );
        assert!(cloud.lock().calls.is_empty(), "{:?}", cloud.lock().calls);
        cloud.lock().subnet_routes = Some(table(&[LOCAL, ("0.0.0.0/0", "nat-1", true)]));
        crate::actions::prepare::prepare(&cloud, &config, "IR-1", &subject)
            .await
            .unwrap();
    }
}
