use super::*;
use crate::cloud::PrefixListRoute;
use crate::fake::{NetState, endpoint_vpc};
use proptest::prelude::*;

fn network() -> InstanceNetwork {
    InstanceNetwork {
        subnet_id: "subnet-1".into(),
        private_ip: Some("10.0.1.10".into()),
    }
}

/// Decides for `net` with the instance and evidence in eu-west-1.
fn decide_for(net: &NetState, evidence_region: &str, endpoints_group: Option<&str>) -> Decision {
    let network = network();
    decide(&Facts {
        region: "eu-west-1",
        evidence_region,
        network: &network,
        route_table: net.route_tables.get("subnet-1"),
        endpoints: &net.endpoints,
        ingress: &net.ingress,
        endpoints_group,
    })
}

#[test]
fn a_vpc_with_the_three_ssm_endpoints_and_a_routed_s3_gateway_contains_first() {
    let d = decide_for(&endpoint_vpc(), "eu-west-1", None);
    assert!(d.contain_first, "{d:?}");
    assert_eq!(
        d.egress,
        vec![
            HttpsEgress::Group("sg-endpoints".into()),
            HttpsEgress::PrefixList("pl-s3".into())
        ]
    );
    assert!(d.notes.is_empty(), "{:?}", d.notes);
}

#[test]
fn each_missing_piece_makes_it_acquire_first_and_is_named() {
    type Change = fn(&mut NetState);
    let cases: Vec<(Change, &str)> = vec![
        (
            |n| n.endpoints.retain(|e| e.id != "vpce-ssmmessages"),
            "no interface endpoint for com.amazonaws.eu-west-1.ssmmessages",
        ),
        (
            |n| n.endpoints.iter_mut().for_each(|e| e.private_dns = false),
            "vpce-ssm (ssm) has private DNS off",
        ),
        (
            |n| {
                if let Some(e) = n.endpoints.iter_mut().find(|e| e.id == "vpce-ec2messages") {
                    e.available = false;
                }
            },
            "vpce-ec2messages (ec2messages) is not available",
        ),
        (
            |n| n.ingress[0].cidrs = vec!["10.1.0.0/16".into()],
            "admit no TCP 443 from 10.0.1.10",
        ),
        (
            |n| n.ingress[0].from_port = Some(444),
            "admit no TCP 443 from 10.0.1.10",
        ),
        (
            |n| n.ingress[0].protocol = "udp".into(),
            "admit no TCP 443 from 10.0.1.10",
        ),
        (
            |n| n.route_tables.clear(),
            "no path to S3: no gateway endpoint for com.amazonaws.eu-west-1.s3 routed in no route table",
        ),
        (
            |n| {
                n.route_tables
                    .values_mut()
                    .for_each(|t| t.prefix_list_routes.clear())
            },
            "routed in route table rtb-1 of subnet subnet-1",
        ),
        (
            // An endpoint of another region is no endpoint of this one.
            |n| {
                n.endpoints
                    .iter_mut()
                    .for_each(|e| e.service_name = e.service_name.replace("eu-west-1", "eu-west-2"))
            },
            "no interface endpoint for com.amazonaws.eu-west-1.ssm",
        ),
    ];
    for (change, expected) in cases {
        let mut net = endpoint_vpc();
        change(&mut net);
        let d = decide_for(&net, "eu-west-1", None);
        assert!(!d.contain_first, "{expected}: {d:?}");
        assert!(
            d.reason.starts_with("acquire first") && d.reason.contains(expected),
            "expected {expected:?} in {:?}",
            d.reason
        );
        assert!(d.egress.is_empty());
    }
}

#[test]
fn evidence_in_another_region_acquires_first() {
    let d = decide_for(&endpoint_vpc(), "us-east-1", None);
    assert!(!d.contain_first);
    assert!(
        d.reason
            .contains("the evidence bucket is in us-east-1, the instance in eu-west-1"),
        "{}",
        d.reason
    );
}

#[test]
fn a_rule_from_the_endpoints_group_admits_the_isolated_instance() {
    let mut net = endpoint_vpc();
    net.ingress[0].cidrs.clear();
    net.ingress[0].source_groups = vec!["sg-airf-endpoints".into()];
    assert!(!decide_for(&net, "eu-west-1", None).contain_first);
    assert!(decide_for(&net, "eu-west-1", Some("sg-airf-endpoints")).contain_first);
    // A rule from one of the instance's own groups stops matching once they are swapped out.
    net.ingress[0].source_groups = vec!["sg-web".into()];
    assert!(!decide_for(&net, "eu-west-1", Some("sg-airf-endpoints")).contain_first);
}

#[test]
fn an_s3_interface_endpoint_is_a_path_to_s3_through_its_groups() {
    let mut net = endpoint_vpc();
    net.endpoints.retain(|e| e.id != "vpce-s3");
    net.endpoints.push(VpcEndpoint {
        id: "vpce-s3i".into(),
        service_name: "com.amazonaws.eu-west-1.s3".into(),
        kind: EndpointKind::Interface,
        available: true,
        private_dns: true,
        security_groups: vec!["sg-s3".into()],
        route_tables: Vec::new(),
        policy: None,
    });
    net.ingress.push(IngressRule {
        group_id: "sg-s3".into(),
        protocol: "-1".into(),
        from_port: None,
        to_port: None,
        cidrs: vec!["10.0.1.10/32".into()],
        source_groups: Vec::new(),
    });
    assert_eq!(
        groups_to_check(&net.endpoints, "eu-west-1"),
        vec!["sg-endpoints".to_owned(), "sg-s3".to_owned()]
    );
    let d = decide_for(&net, "eu-west-1", None);
    assert!(d.contain_first, "{d:?}");
    assert_eq!(
        d.egress,
        vec![
            HttpsEgress::Group("sg-endpoints".into()),
            HttpsEgress::Group("sg-s3".into())
        ]
    );
}

#[test]
fn a_custom_endpoint_policy_is_noted_not_guessed() {
    let mut net = endpoint_vpc();
    net.endpoints[3].policy = Some(
        r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"*",
            "Condition":{"StringEquals":{"aws:ResourceOrgID":"o-1"}}}]}"#
            .into(),
    );
    let d = decide_for(&net, "eu-west-1", None);
    assert!(d.contain_first);
    assert!(
        matches!(d.notes.as_slice(), [n] if n.contains("vpce-s3 (s3) has a custom endpoint policy")),
        "{:?}",
        d.notes
    );
}

#[test]
fn service_names_are_read_in_every_partition() {
    assert_eq!(
        service_of("com.amazonaws.eu-west-1.ssm", "eu-west-1"),
        Some("ssm")
    );
    assert_eq!(
        service_of("cn.com.amazonaws.cn-north-1.ssmmessages", "cn-north-1"),
        Some("ssmmessages")
    );
    assert_eq!(service_of("com.amazonaws.eu-west-1.ssm", "eu-west-2"), None);
    assert_eq!(
        service_of("com.amazonaws.eu-west-10.ssm", "eu-west-1"),
        None
    );
    assert_eq!(
        service_of("aws.sagemaker.eu-west-1.notebook", "eu-west-1"),
        None
    );
}

#[test]
fn full_access_policies_are_told_from_the_others() {
    let full = r#"{"Statement":[{"Action":"*","Effect":"Allow","Principal":"*","Resource":"*"}]}"#;
    assert!(policy_is_full_access(None));
    assert!(policy_is_full_access(Some(full)));
    assert!(policy_is_full_access(Some(
        r#"{"Statement":{"Action":["*"],"Effect":"Allow","Principal":{"AWS":"*"},"Resource":"*"}}"#
    )));
    for other in [
        r#"{"Statement":[{"Action":"*","Effect":"Allow","Principal":"*","Resource":"arn:aws:s3:::b/*"}]}"#,
        r#"{"Statement":[{"Action":"*","Effect":"Allow","Principal":"*","Resource":"*"},
                         {"Action":"s3:*","Effect":"Deny","Principal":"*","Resource":"*"}]}"#,
        "not json",
        "{}",
    ] {
        assert!(!policy_is_full_access(Some(other)), "{other}");
    }
}

#[test]
fn cidrs() {
    let ip: Ipv4Addr = "10.0.1.10".parse().unwrap();
    assert!(cidr_contains("10.0.0.0/16", ip));
    assert!(cidr_contains("0.0.0.0/0", ip));
    assert!(cidr_contains("10.0.1.10/32", ip));
    assert!(!cidr_contains("10.0.1.11/32", ip));
    assert!(!cidr_contains("10.1.0.0/16", ip));
    for junk in [
        "10.0.0.0",
        "10.0.0.0/33",
        "10.0.0/16",
        "::/0",
        "",
        "10.0.0.0/-1",
    ] {
        assert!(!cidr_contains(junk, ip), "{junk}");
    }
}

proptest! {
    /// Rule text comes from the member account: whatever it holds, the check answers and the
    /// network of an address always holds it.
    #[test]
    fn any_cidr_text_is_answered_and_networks_hold_their_addresses(
        text in "[0-9./]{0,20}", a in any::<u32>(), len in 0u32..=32
    ) {
        let ip = Ipv4Addr::from(a);
        let _ = cidr_contains(&text, ip);
        let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
        let net = Ipv4Addr::from(a & mask);
        let cidr = format!("{net}/{len}");
        prop_assert!(cidr_contains(&cidr, ip), "{} does not hold {}", cidr, ip);
    }

    #[test]
    fn any_policy_text_is_answered(text in "[ -~]{0,120}") {
        let _ = policy_is_full_access(Some(&text));
    }
}

#[test]
fn prefix_list_routes_of_other_gateways_are_not_s3() {
    let mut net = endpoint_vpc();
    net.route_tables.values_mut().for_each(|t| {
        t.prefix_list_routes = vec![PrefixListRoute {
            prefix_list_id: "pl-ddb".into(),
            gateway_id: "vpce-dynamodb".into(),
        }]
    });
    assert!(!decide_for(&net, "eu-west-1", None).contain_first);
}
