//! `contain`: isolate the instance so that nothing more leaves it and nothing destroys the
//! evidence, in an order that never makes things worse halfway:
//!
//! 1. out of its Auto Scaling group and load-balancer target groups (an unhealthy-looking
//!    instance would otherwise be terminated by its group, taking memory and disks with it);
//! 2. termination and stop protection, volumes kept on termination;
//! 3. network: first a security group that allows everything, so existing connections become
//!    untracked, then the isolation group with no rules, which then drops them;
//! 4. the deny-all instance profile, and sessions issued to this instance before now revoked
//!    (the policy [`revoke`] builds);
//! 5. a snapshot of every volume, tagged with the case;
//! 6. the tags `SecurityIncidentStatus=Contain` and `airf:contained=<case>`.
//!
//! Every step is idempotent, so a retried `contain` finishes the job. If a step fails, the error
//! names the steps already done, and the workflow's error step reports that the instance is
//! partly contained.

use crate::cloud::Cloud;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::model::{
    CASE_TAG, CONTAINED_TAG, InstanceFacts, MANAGED_TAG, STATUS_TAG, Status, Subject,
};
use crate::notify::notify;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub mod revoke;

/// Security group that allows all traffic: existing connections become untracked on it.
pub const UNTRACK_GROUP: &str = "airf-untrack";
/// Security group with no rules.
pub const ISOLATION_GROUP: &str = "airf-isolation";

/// What containment will do to this instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// VPC of the instance.
    pub vpc_id: String,
    /// Interfaces whose groups change.
    pub interfaces: Vec<String>,
    /// Devices to keep on termination.
    pub keep_devices: Vec<String>,
    /// Volumes to snapshot.
    pub snapshot_volumes: Vec<String>,
    /// Association to replace with the isolation profile; None: associate one.
    pub replace_association: Option<String>,
    /// Whether the isolation profile is already attached.
    pub profile_done: bool,
    /// Instance profiles whose roles' sessions from this instance are revoked.
    pub revoke_profiles: Vec<String>,
}

/// Plans containment from the instance's facts.
pub fn plan(facts: &InstanceFacts, config: &Config) -> Result<Plan, String> {
    let vpc_id = facts
        .vpc_id
        .clone()
        .ok_or("the instance is in no VPC; security groups cannot isolate it")?;
    if facts.interfaces.is_empty() {
        return Err("the instance has no network interface to isolate".into());
    }
    // Every profile whose role this instance may have had credentials of: the one before airf
    // (recorded by prepare, or by contain itself before the swap), the acquisition profile, and
    // whatever is attached now. The revocation is scoped to this instance, so naming a profile it
    // never had costs nothing; missing one would leave stolen credentials working.
    let mut revoke_profiles: Vec<String> = Vec::new();
    let current = facts.profile.as_ref().map(|p| p.profile_name().to_owned());
    let previous = facts
        .tag(super::prepare::PREVIOUS_PROFILE_TAG)
        .map(|p| p.rsplit('/').next().unwrap_or(p).to_owned());
    for profile in [
        previous,
        Some(config.acquisition_profile_name.clone()),
        current.clone(),
    ]
    .into_iter()
    .flatten()
    {
        if profile != config.isolation_profile_name && !revoke_profiles.contains(&profile) {
            revoke_profiles.push(profile);
        }
    }
    Ok(Plan {
        vpc_id,
        interfaces: facts.interfaces.iter().map(|i| i.id.clone()).collect(),
        keep_devices: facts
            .volumes
            .iter()
            .filter(|v| v.delete_on_termination)
            .map(|v| v.device.clone())
            .collect(),
        snapshot_volumes: facts.volumes.iter().map(|v| v.id.clone()).collect(),
        replace_association: facts.profile.as_ref().map(|p| p.association_id.clone()),
        profile_done: current.as_deref() == Some(config.isolation_profile_name.as_str()),
        revoke_profiles,
    })
}

/// What `contain` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Containment {
    /// Steps done, in order.
    pub steps: Vec<String>,
    /// Auto Scaling group left.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_scaling_group: Option<String>,
    /// Target groups left.
    pub target_groups: Vec<String>,
    /// Security groups the interfaces had.
    pub previous_groups: BTreeMap<String, Vec<String>>,
    /// The isolation group.
    pub isolation_group: String,
    /// Roles whose earlier sessions from this instance are revoked.
    pub revoked_roles: Vec<String>,
    /// Snapshots taken.
    pub snapshots: Vec<String>,
}

/// Contains the instance.
pub async fn contain<C: Cloud>(
    cloud: &C,
    config: &Config,
    case_id: &str,
    subject: &Subject,
    now_rfc3339: &str,
) -> Result<Containment> {
    let mut done = Containment::default();
    match run(cloud, config, case_id, subject, now_rfc3339, &mut done).await {
        Ok(()) => {
            notify(
                cloud,
                config,
                case_id,
                &subject.target,
                "instance contained",
                &format!(
                    "Isolation group {}; instance profile {}; snapshots: {}.\nSteps: {}.",
                    done.isolation_group,
                    config.isolation_profile_name,
                    if done.snapshots.is_empty() {
                        "none".to_owned()
                    } else {
                        done.snapshots.join(", ")
                    },
                    done.steps.join("; ")
                ),
            )
            .await?;
            Ok(done)
        }
        Err(e) => {
            let so_far = if done.steps.is_empty() {
                "nothing".to_owned()
            } else {
                done.steps.join("; ")
            };
            let message = format!("containment incomplete (done: {so_far}): {e}");
            Err(match e.kind() {
                crate::error::Kind::Transient => Error::Aws {
                    operation: "contain",
                    message,
                    retryable: true,
                },
                _ => Error::failed(message),
            })
        }
    }
}

async fn run<C: Cloud>(
    cloud: &C,
    config: &Config,
    case_id: &str,
    subject: &Subject,
    now: &str,
    done: &mut Containment,
) -> Result<()> {
    let target = &subject.target;
    let facts = super::instance(cloud, target).await?;
    let plan = plan(&facts, config).map_err(Error::failed)?;

    if let Some(group) = cloud.auto_scaling_group(target).await? {
        cloud.detach_from_auto_scaling_group(target, &group).await?;
        done.steps
            .push(format!("detached from Auto Scaling group {group}"));
        done.auto_scaling_group = Some(group);
    }
    for registration in cloud.target_registrations(target).await? {
        cloud.deregister(target, &registration).await?;
        done.steps.push(format!(
            "deregistered from {}",
            registration.target_group_arn
        ));
        done.target_groups.push(registration.target_group_arn);
    }

    cloud.protect(target).await?;
    done.steps.push("termination and stop protection on".into());
    if !plan.keep_devices.is_empty() {
        cloud.keep_volumes(target, &plan.keep_devices).await?;
        done.steps.push(format!(
            "DeleteOnTermination=false on {}",
            plan.keep_devices.join(", ")
        ));
    }

    let untrack = cloud
        .ensure_security_group(target, &plan.vpc_id, UNTRACK_GROUP, true)
        .await?;
    let isolation = cloud
        .ensure_security_group(target, &plan.vpc_id, ISOLATION_GROUP, false)
        .await?;
    done.isolation_group = isolation.clone();
    for interface in &facts.interfaces {
        done.previous_groups
            .insert(interface.id.clone(), interface.groups.clone());
    }
    if facts
        .interfaces
        .iter()
        .any(|i| i.groups != [isolation.clone()])
    {
        for interface in &plan.interfaces {
            cloud
                .set_interface_groups(target, interface, std::slice::from_ref(&untrack))
                .await?;
        }
        done.steps
            .push(format!("connections untracked ({untrack})"));
        for interface in &plan.interfaces {
            cloud
                .set_interface_groups(target, interface, std::slice::from_ref(&isolation))
                .await?;
        }
    }
    done.steps.push(format!("network isolated ({isolation})"));

    if !plan.profile_done {
        // Recorded before the swap, so a retry after a failure still knows whose sessions to revoke.
        if let Some(current) = &facts.profile
            && facts.tag(super::prepare::PREVIOUS_PROFILE_TAG).is_none()
            && current.profile_name() != config.acquisition_profile_name
        {
            let tags = BTreeMap::from([(
                super::prepare::PREVIOUS_PROFILE_TAG.to_owned(),
                current.profile_arn.clone(),
            )]);
            cloud.tag_instance(target, &tags).await?;
        }
        match &plan.replace_association {
            Some(association) => {
                cloud
                    .replace_profile(target, association, &config.isolation_profile_name)
                    .await?
            }
            None => {
                cloud
                    .associate_profile(target, &config.isolation_profile_name)
                    .await?
            }
        }
    }
    done.steps.push(format!(
        "instance profile {}",
        config.isolation_profile_name
    ));
    let (policy_name, policy) = (
        revoke::policy_name(&target.instance_id),
        revoke::policy_document(target, now),
    );
    for profile in &plan.revoke_profiles {
        for role in cloud.profile_roles(target, profile).await? {
            cloud
                .put_role_policy(target, &role, &policy_name, &policy)
                .await?;
            done.steps.push(format!(
                "sessions of role {role} from this instance before {now} revoked"
            ));
            done.revoked_roles.push(role);
        }
    }

    let tags = BTreeMap::from([
        (CASE_TAG.to_owned(), case_id.to_owned()),
        (MANAGED_TAG.to_owned(), "true".to_owned()),
        ("airf:instance".to_owned(), target.instance_id.clone()),
    ]);
    let existing = cloud.case_snapshots(target, case_id).await?;
    for volume in &plan.snapshot_volumes {
        if let Some((_, id)) = existing.iter().find(|(v, _)| v == volume) {
            done.steps
                .push(format!("snapshot {id} of {volume} (taken before)"));
            done.snapshots.push(id.clone());
            continue;
        }
        let description = format!("airf {case_id} {} {volume}", target.instance_id);
        let id = cloud.snapshot(target, volume, &description, &tags).await?;
        done.steps.push(format!("snapshot {id} of {volume}"));
        done.snapshots.push(id);
    }

    let status = BTreeMap::from([
        (STATUS_TAG.to_owned(), Status::Contain.as_str().to_owned()),
        (CONTAINED_TAG.to_owned(), case_id.to_owned()),
        (CASE_TAG.to_owned(), case_id.to_owned()),
    ]);
    cloud.tag_instance(target, &status).await?;
    done.steps
        .push("tagged SecurityIncidentStatus=Contain".into());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_config;
    use crate::fake::facts;
    use crate::model::{ProfileAssociation, Volume};

    #[test]
    fn plan_covers_every_interface_volume_and_role() {
        let mut f = facts("i-0123456789abcdef0");
        f.volumes.push(Volume {
            id: "vol-2".into(),
            device: "/dev/sdb".into(),
            delete_on_termination: false,
        });
        f.profile = Some(ProfileAssociation {
            association_id: "iip-assoc-9".into(),
            profile_arn:
                "arn:aws:iam::111111111111:instance-profile/AirfAcquisitionInstanceProfile".into(),
        });
        f.tags.insert(
            "airf:previous-profile".into(),
            "arn:aws:iam::111111111111:instance-profile/WebServer".into(),
        );
        let p = plan(&f, &test_config()).unwrap();
        assert_eq!(p.interfaces, vec!["eni-1".to_owned()]);
        assert_eq!(
            p.keep_devices,
            vec!["/dev/xvda".to_owned()],
            "only volumes that would be deleted"
        );
        assert_eq!(
            p.snapshot_volumes,
            vec!["vol-1".to_owned(), "vol-2".to_owned()]
        );
        assert_eq!(
            p.revoke_profiles,
            vec![
                "WebServer".to_owned(),
                "AirfAcquisitionInstanceProfile".to_owned()
            ]
        );
        assert_eq!(p.replace_association.as_deref(), Some("iip-assoc-9"));
        assert!(!p.profile_done);
    }

    fn subject() -> Subject {
        Subject {
            target: facts("i-0123456789abcdef0").target,
            claim: 1,
        }
    }

    #[tokio::test]
    async fn a_failed_step_names_what_was_done_and_a_retry_finishes_without_repeating() {
        let mut f = facts("i-0123456789abcdef0");
        f.profile = Some(ProfileAssociation {
            association_id: "iip-assoc-1".into(),
            profile_arn: "arn:aws:iam::111111111111:instance-profile/WebServer".into(),
        });
        let cloud = crate::fake::FakeCloud::with(f);
        cloud.lock().fail_on = Some(("PutRolePolicy".into(), true));
        let (config, subject) = (test_config(), subject());
        let run = || contain(&cloud, &config, "IR-1", &subject, "2026-11-29T18:00:00Z");
        let first = run().await;
        let err = first.err().map(|e| (e.kind(), e.to_string()));
        assert!(
            matches!(&err, Some((crate::error::Kind::Transient, m)) if m.contains("containment incomplete")
                && m.contains("network isolated") && !m.contains("snapshot")),
            "{err:?}"
        );
        let second = run().await;
        assert!(second.is_ok(), "{second:?}");
        let third = run().await;
        assert!(third.is_ok_and(|c| c.snapshots == ["snap-vol-1"]));
        let calls = cloud.lock().calls.clone();
        assert_eq!(
            calls
                .iter()
                .filter(|c| c.starts_with("CreateSnapshot"))
                .count(),
            1,
            "{calls:#?}"
        );
        assert_eq!(
            calls
                .iter()
                .filter(|c| c.starts_with("CreateSecurityGroup"))
                .count(),
            2,
            "{calls:#?}"
        );
        let tags = cloud.lock().instances["i-0123456789abcdef0"].tags.clone();
        assert_eq!(
            tags.get("SecurityIncidentStatus").map(String::as_str),
            Some("Contain")
        );
    }

    #[tokio::test]
    async fn earlier_sessions_are_revoked_with_the_document_revoke_builds() {
        let mut f = facts("i-0123456789abcdef0");
        f.profile = Some(ProfileAssociation {
            association_id: "iip-assoc-1".into(),
            profile_arn: "arn:aws:iam::111111111111:instance-profile/WebServer".into(),
        });
        let cloud = crate::fake::FakeCloud::with(f);
        let subject = subject();
        let now = "2026-11-29T18:00:00Z";
        contain(&cloud, &test_config(), "IR-1", &subject, now)
            .await
            .unwrap();
        let expected = revoke::policy_document(&subject.target, now);
        let name = revoke::policy_name("i-0123456789abcdef0");
        let sent = cloud.lock().role_policies.clone();
        assert_eq!(
            sent,
            BTreeMap::from([
                (("WebServerRole".to_owned(), name.clone()), expected.clone()),
                (
                    ("AirfAcquisitionInstanceProfileRole".to_owned(), name),
                    expected
                ),
            ]),
            "every role the instance had, none of the isolation profile's"
        );
    }

    #[test]
    fn an_instance_outside_a_vpc_cannot_be_planned() {
        let mut f = facts("i-0123456789abcdef0");
        f.vpc_id = None;
        assert!(plan(&f, &test_config()).is_err());
    }
}
