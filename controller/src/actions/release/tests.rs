use super::*;
use crate::actions::contain::contain;
use crate::actions::isolate::isolate;
use crate::actions::prepare::prepare;
use crate::cloud::{Protection, TargetRegistration};
use crate::fake::{FakeCloud, endpoint_vpc, facts, same_region_config, subject};
use crate::model::ProfileAssociation;

const ID: &str = "i-0123456789abcdef0";
const TG: &str =
    "arn:aws:elasticloadbalancing:eu-west-1:111111111111:targetgroup/web/0123456789abcdef";

fn web_server(profile: bool) -> FakeCloud {
    let mut f = facts(ID);
    if profile {
        f.profile = Some(ProfileAssociation {
            association_id: "iip-assoc-1".into(),
            profile_arn: "arn:aws:iam::111111111111:instance-profile/WebServer".into(),
        });
    }
    f.tags
        .insert("aws:autoscaling:groupName".into(), "web-asg".into());
    f.tags.insert("Name".into(), "web-1".into());
    let cloud = FakeCloud::with(f);
    cloud.lock().net = endpoint_vpc();
    cloud.lock().net.registrations = vec![TargetRegistration {
        target_group_arn: TG.into(),
        port: Some(80),
    }];
    cloud
}

/// Contain-first, prepare, contain: what the workflow does to a contain-first instance.
async fn contained(cloud: &FakeCloud) {
    let (config, subject) = (same_region_config(), subject(ID));
    isolate(cloud, &config, "IR-1", &subject).await.unwrap();
    prepare(cloud, &config, "IR-1", &subject).await.unwrap();
    contain(cloud, &config, "IR-1", &subject, "2026-11-29T18:00:00Z")
        .await
        .unwrap();
}

#[tokio::test]
async fn release_restores_groups_protection_and_load_balancing_and_names_the_profile() {
    let cloud = web_server(true);
    contained(&cloud).await;
    let before_release = cloud.lock().calls.len();
    let done = release(&cloud, &same_region_config(), "IR-1", &subject(ID))
        .await
        .unwrap();
    assert!(!done.already_released);
    let calls = cloud.lock().calls.clone();
    let after = &calls[before_release..];
    {
        let s = cloud.lock();
        let inst = &s.instances[ID];
        assert_eq!(inst.interfaces[0].groups, ["sg-web"]);
        // airf's deny-all profile is off; the instance's own is for the responder to put back.
        assert_eq!(inst.profile, None);
        assert_eq!(inst.tags["SecurityIncidentStatus"], "Released");
        assert_eq!(inst.tags["airf:released"], "IR-1");
        assert_eq!(inst.tags["aws:autoscaling:groupName"], "web-asg");
        assert_eq!(inst.tags["Name"], "web-1");
        assert_eq!(inst.tags["airf:case"], "IR-1", "the case stays on record");
        for gone in [
            "airf:restore:case",
            "airf:restore:sg:eni-1",
            "airf:previous-profile",
            "airf:contained",
        ] {
            assert!(
                !inst.tags.contains_key(gone),
                "{gone} left: {:?}",
                inst.tags
            );
        }
        assert!(!s.protected.contains(&ID.to_owned()));
        assert_eq!(
            s.net.protection[ID],
            Protection {
                termination: false,
                stop: false
            }
        );
        assert_eq!(
            s.net.registrations,
            [TargetRegistration {
                target_group_arn: TG.into(),
                port: Some(80)
            }]
        );
    }
    assert!(
        after
            .iter()
            .any(|c| c == &format!("AttachInstances web-asg {ID}")),
        "{after:#?}"
    );
    assert_eq!(done.profile_to_restore.as_deref(), Some("WebServer"));
    let region = subject(ID).target.region;
    assert_eq!(
        done.restore_profile_command,
        Some(format!(
            "aws ec2 associate-iam-instance-profile --region {region} --instance-id {ID} \
             --iam-instance-profile Name=WebServer"
        ))
    );
    assert!(
        done.steps
            .iter()
            .any(|s| s.contains("NOT restored") && s.contains("Name=WebServer")),
        "{:?}",
        done.steps
    );
    // airf never passes the instance's own role (finding 8): no association call.
    assert!(
        !after
            .iter()
            .any(|c| c.starts_with("ReplaceIamInstanceProfileAssociation")
                || c.starts_with("AssociateIamInstanceProfile")),
        "{after:#?}"
    );
    // Groups come back before the instance rejoins its load balancer.
    let pos = |p: &str| after.iter().position(|c| c.starts_with(p)).unwrap();
    assert!(pos("ModifyNetworkInterfaceAttribute") < pos("AttachInstances"));
    assert!(pos("DisassociateIamInstanceProfile") < pos("RegisterTargets"));
    assert!(
        pos("CreateTags") < pos("DeleteTags"),
        "Released before the record goes"
    );

    // Again: nothing to do, nothing called but the check.
    let n = cloud.lock().calls.len();
    let again = release(&cloud, &same_region_config(), "IR-1", &subject(ID))
        .await
        .unwrap();
    assert!(again.already_released);
    assert_eq!(cloud.lock().calls.len(), n);
}

#[tokio::test]
async fn an_instance_that_had_no_profile_gets_none_back() {
    let cloud = web_server(false);
    contained(&cloud).await;
    release(&cloud, &same_region_config(), "IR-1", &subject(ID))
        .await
        .unwrap();
    assert_eq!(cloud.lock().instances[ID].profile, None);
    assert!(
        cloud
            .lock()
            .calls
            .iter()
            .any(|c| c.starts_with("DisassociateIamInstanceProfile"))
    );
}

#[tokio::test]
async fn a_running_acquisition_is_refused_with_the_command_named() {
    let cloud = web_server(true);
    contained(&cloud).await;
    cloud.lock().net.running = vec![("c-9".into(), "airf-acquire-disk".into())];
    let n = cloud.lock().calls.len();
    let err = release(&cloud, &same_region_config(), "IR-1", &subject(ID))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), crate::error::Kind::Failed);
    let m = err.to_string();
    assert!(
        m.contains("acquisition is still running") && m.contains("c-9"),
        "{m}"
    );
    assert_eq!(cloud.lock().calls.len(), n, "nothing changed");
    // Another tool's command does not hold a release back.
    cloud.lock().net.running = vec![("c-8".into(), "AWS-RunPatchBaseline".into())];
    assert!(
        release(&cloud, &same_region_config(), "IR-1", &subject(ID))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_running_investigation_is_refused() {
    let cloud = web_server(true);
    contained(&cloud).await;
    cloud
        .lock()
        .instances
        .get_mut(ID)
        .unwrap()
        .tags
        .insert("SecurityIncidentStatus".into(), "InProgress".into());
    let err = release(&cloud, &same_region_config(), "IR-1", &subject(ID))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("still running"), "{err}");
}

#[tokio::test]
async fn without_a_record_release_says_so_and_changes_nothing() {
    let cloud = web_server(true);
    let err = release(&cloud, &same_region_config(), "IR-1", &subject(ID))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("airf:restore:case"), "{err}");
    assert!(cloud.lock().calls.is_empty());
}

#[tokio::test]
async fn release_after_a_failure_halfway_finishes_on_retry() {
    let cloud = web_server(true);
    contained(&cloud).await;
    cloud.lock().fail_on = Some(("AttachInstances".into(), true));
    assert!(
        release(&cloud, &same_region_config(), "IR-1", &subject(ID))
            .await
            .is_err()
    );
    let done = release(&cloud, &same_region_config(), "IR-1", &subject(ID))
        .await
        .unwrap();
    assert!(!done.already_released);
    let inst = cloud.lock().instances[ID].clone();
    assert_eq!(inst.tags["SecurityIncidentStatus"], "Released");
    assert_eq!(inst.tags["aws:autoscaling:groupName"], "web-asg");
}

/// Contain-only (the `Contain` tag) and acquire-first containments are released too, once
/// `contain` records the state first: in contain.rs `run`, after `let plan = …?;`,
/// `if let super::isolate::Recorded::NotRecorded(why) =
///     super::isolate::record_restore_state(cloud, config, case_id, &facts).await?
/// { done.steps.push(format!("state to restore NOT recorded: {why}")); }`.
#[tokio::test]
async fn a_contain_only_instance_is_released() {
    let cloud = web_server(true);
    contain(
        &cloud,
        &same_region_config(),
        "IR-1",
        &subject(ID),
        "2026-11-29T18:00:00Z",
    )
    .await
    .unwrap();
    release(&cloud, &same_region_config(), "IR-1", &subject(ID))
        .await
        .unwrap();
    let inst = cloud.lock().instances[ID].clone();
    assert_eq!(inst.interfaces[0].groups, ["sg-web"]);
    assert_eq!(inst.profile, None);
    assert_eq!(inst.tags["aws:autoscaling:groupName"], "web-asg");
}
