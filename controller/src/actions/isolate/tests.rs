use super::*;
use crate::actions::contain::contain;
use crate::cloud::TargetRegistration;
use crate::fake::{FakeCloud, endpoint_vpc, facts, same_region_config, subject};
use crate::model::ProfileAssociation;

const ID: &str = "i-0123456789abcdef0";

/// A web server in an Auto Scaling group and a target group, in a VPC with the endpoints.
fn web_server() -> FakeCloud {
    let mut f = facts(ID);
    f.profile = Some(ProfileAssociation {
        association_id: "iip-assoc-1".into(),
        profile_arn: "arn:aws:iam::111111111111:instance-profile/WebServer".into(),
    });
    f.tags
        .insert("aws:autoscaling:groupName".into(), "web-asg".into());
    let cloud = FakeCloud::with(f);
    cloud.lock().net = endpoint_vpc();
    cloud.lock().net.registrations = vec![TargetRegistration {
        target_group_arn:
            "arn:aws:elasticloadbalancing:eu-west-1:111111111111:targetgroup/web/0123456789abcdef"
                .into(),
        port: Some(80),
    }];
    cloud
}

fn position(calls: &[String], prefix: &str) -> usize {
    calls
        .iter()
        .position(|c| c.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix} in {calls:#?}"))
}

#[tokio::test]
async fn the_plan_is_recorded_on_the_instance_and_notified() {
    let cloud = web_server();
    let d = isolation_plan(&cloud, &same_region_config(), "IR-1", &subject(ID))
        .await
        .unwrap();
    assert!(d.contain_first, "{d:?}");
    let tags = cloud.lock().instances[ID].tags.clone();
    assert_eq!(tags["airf:isolation"], "contain-first");
    assert!(tags["airf:isolation-reason"].starts_with("contain first"));
    let published = cloud.lock().published.clone();
    assert!(
        published
            .iter()
            .any(|(_, subject, _)| subject.contains("contain first")),
        "{published:?}"
    );

    // Without the endpoints: acquire first, and the tag says what is missing.
    let cloud = web_server();
    cloud.lock().net.endpoints.retain(|e| e.id != "vpce-ssm");
    let d = isolation_plan(&cloud, &same_region_config(), "IR-1", &subject(ID))
        .await
        .unwrap();
    assert!(!d.contain_first);
    let tags = cloud.lock().instances[ID].tags.clone();
    assert_eq!(tags["airf:isolation"], "acquire-first");
    assert!(
        tags["airf:isolation-reason"].contains("com.amazonaws.eu-west-1.ssm"),
        "{tags:?}"
    );
    assert!(tags["airf:isolation-reason"].len() <= 256);
    let published = cloud.lock().published.clone();
    assert!(
        published
            .iter()
            .any(|(_, s, m)| s.contains("acquire first") && m.contains("no interface endpoint")),
        "{published:?}"
    );
}

#[tokio::test]
async fn isolate_records_first_then_detaches_then_swaps_through_the_untrack_group() {
    let cloud = web_server();
    let done = isolate(&cloud, &same_region_config(), "IR-1", &subject(ID))
        .await
        .unwrap();
    assert!(done.restore_recorded, "{done:?}");
    let calls = cloud.lock().calls.clone();
    let record = position(&calls, "CreateTags");
    assert!(calls[record].contains("airf:restore:case"), "{calls:#?}");
    assert!(record < position(&calls, "DetachInstances web-asg"));
    assert!(position(&calls, "DetachInstances") < position(&calls, "DeregisterTargets"));
    let untrack = position(
        &calls,
        "ModifyNetworkInterfaceAttribute eni-1 [\"sg-airf-untrack\"]",
    );
    let endpoints = position(
        &calls,
        "ModifyNetworkInterfaceAttribute eni-1 [\"sg-airf-isolation-endpoints\"]",
    );
    assert!(position(&calls, "DeregisterTargets") < untrack && untrack < endpoints);

    // The endpoints group: HTTPS to the endpoints' group and the S3 prefix list, nothing else.
    assert_eq!(
        cloud.lock().net.egress_rules["sg-airf-isolation-endpoints"],
        vec![
            HttpsEgress::Group("sg-endpoints".into()),
            HttpsEgress::PrefixList("pl-s3".into())
        ]
    );
    let inst = cloud.lock().instances[ID].clone();
    assert_eq!(inst.interfaces[0].groups, ["sg-airf-isolation-endpoints"]);
    // The profile is not touched: the agent needs the acquisition profile prepare gives.
    assert_eq!(
        inst.profile.map(|p| p.profile_arn),
        Some("arn:aws:iam::111111111111:instance-profile/WebServer".into())
    );
    assert!(!calls.iter().any(|c| c.contains("InstanceProfile")));
    let record = record::RestoreRecord::from_tags(&inst.tags)
        .unwrap()
        .unwrap();
    assert_eq!(record.groups["eni-1"], ["sg-web"]);
    assert_eq!(record.auto_scaling_group.as_deref(), Some("web-asg"));
    assert_eq!(record.target_groups.len(), 1);
    assert_eq!(
        record.profile,
        Some(Some(
            "arn:aws:iam::111111111111:instance-profile/WebServer".into()
        ))
    );

    // Again: nothing changes, the record is kept.
    let n = calls.len();
    let again = isolate(&cloud, &same_region_config(), "IR-1", &subject(ID))
        .await
        .unwrap();
    let calls = cloud.lock().calls.clone();
    assert!(
        calls[n..]
            .iter()
            .all(|c| c.starts_with("Publish") || c.starts_with("DeregisterTargets")),
        "{:#?}",
        &calls[n..]
    );
    assert!(again.steps[0].contains("kept"), "{again:?}");
}

#[tokio::test]
async fn contain_after_isolate_closes_the_endpoints_too_and_keeps_the_record() {
    let cloud = web_server();
    let (config, subject) = (same_region_config(), subject(ID));
    isolate(&cloud, &config, "IR-1", &subject).await.unwrap();
    let n = cloud.lock().calls.len();
    let now = "2026-11-29T18:00:00Z";
    let c = contain(&cloud, &config, "IR-1", &subject, now)
        .await
        .unwrap();
    let calls = cloud.lock().calls.clone();
    let after = &calls[n..];
    // The endpoint connections are tracked: through airf-untrack again, then airf-isolation.
    let untrack = position(
        after,
        "ModifyNetworkInterfaceAttribute eni-1 [\"sg-airf-untrack\"]",
    );
    let closed = position(
        after,
        "ModifyNetworkInterfaceAttribute eni-1 [\"sg-airf-isolation\"]",
    );
    assert!(untrack < closed, "{after:#?}");
    assert_eq!(c.isolation_group, "sg-airf-isolation");
    let inst = cloud.lock().instances[ID].clone();
    assert_eq!(inst.interfaces[0].groups, ["sg-airf-isolation"]);
    assert_eq!(inst.tags["SecurityIncidentStatus"], "Contain");
    // Still the state before isolation.
    let record = record::RestoreRecord::from_tags(&inst.tags)
        .unwrap()
        .unwrap();
    assert_eq!(record.groups["eni-1"], ["sg-web"]);
    // And contain again: no group change, no second snapshot.
    let n = calls.len();
    contain(&cloud, &config, "IR-1", &subject, now)
        .await
        .unwrap();
    let calls = cloud.lock().calls.clone();
    assert!(
        !calls[n..]
            .iter()
            .any(|c| c.starts_with("ModifyNetworkInterfaceAttribute")
                || c.starts_with("CreateSnapshot")),
        "{:#?}",
        &calls[n..]
    );
}

#[tokio::test]
async fn without_the_endpoints_isolate_refuses_and_changes_nothing() {
    let cloud = web_server();
    cloud.lock().net.route_tables.clear();
    let err = isolate(&cloud, &same_region_config(), "IR-1", &subject(ID))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cannot contain first") && err.contains("no path to S3"),
        "{err}"
    );
    assert!(cloud.lock().calls.is_empty(), "{:?}", cloud.lock().calls);
}

#[tokio::test]
async fn an_instance_with_too_many_tags_is_still_isolated() {
    let cloud = web_server();
    for i in 0..46 {
        cloud
            .lock()
            .instances
            .get_mut(ID)
            .unwrap()
            .tags
            .insert(format!("team:{i}"), "x".into());
    }
    let done = isolate(&cloud, &same_region_config(), "IR-1", &subject(ID))
        .await
        .unwrap();
    assert!(!done.restore_recorded);
    assert!(
        done.steps[0].contains("NOT recorded") && done.steps[0].contains("sg-web"),
        "{done:?}"
    );
    assert_eq!(
        cloud.lock().instances[ID].interfaces[0].groups,
        ["sg-airf-isolation-endpoints"]
    );
}

#[tokio::test]
async fn a_failed_swap_says_the_instance_is_partly_contained_and_a_retry_finishes() {
    let cloud = web_server();
    cloud.lock().fail_on = Some((
        "ModifyNetworkInterfaceAttribute eni-1 [\"sg-airf-isolation-endpoints\"]".into(),
        true,
    ));
    let err = isolate(&cloud, &same_region_config(), "IR-1", &subject(ID))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), crate::error::Kind::Transient);
    let message = err.to_string();
    assert!(
        message.contains("containment incomplete") && message.contains("connections untracked"),
        "{message}"
    );
    isolate(&cloud, &same_region_config(), "IR-1", &subject(ID))
        .await
        .unwrap();
    let inst = cloud.lock().instances[ID].clone();
    assert_eq!(inst.interfaces[0].groups, ["sg-airf-isolation-endpoints"]);
    // The record is still the state before anything: the retry did not record the untrack group.
    let record = record::RestoreRecord::from_tags(&inst.tags)
        .unwrap()
        .unwrap();
    assert_eq!(record.groups["eni-1"], ["sg-web"]);
}
