//! `contain`: isolate the instance so that nothing more leaves it and nothing destroys the
//! evidence. Network isolation comes before anything that can fail for reasons of its own, so an
//! instance is never left connected because of a step that is not about the network:
//!
//! 1. out of its Auto Scaling group. This one stays before isolation: an isolated instance fails
//!    its load-balancer health checks (within 10 s at the shortest settings) and a group with
//!    ELB health checks then terminates it, taking memory and disks with it; termination
//!    protection does not stop a group. If the detach fails, nothing has changed yet;
//! 2. network: first a security group that allows everything, so existing connections become
//!    untracked, then the isolation group with no rules, which then drops them;
//! 3. out of load-balancer target groups (nothing terminates it once out of its group: this is
//!    only so that the balancer stops sending it traffic);
//! 4. termination and stop protection, best effort: EC2 refuses both on Spot instances
//!    (`UnsupportedOperation`), and a refusal is recorded in the result and the notification,
//!    not a failure; then volumes kept on termination;
//! 5. the deny-all instance profile, and sessions issued to this instance before now revoked
//!    (the permissions boundary [`revoke`] maintains; a role it cannot cover is reported, with
//!    what the responder must do, and containment goes on);
//! 6. a snapshot of every volume, tagged with the case;
//! 7. the tags `SecurityIncidentStatus=Contain` and `airf:contained=<case>`.
//!
//! Every step is idempotent, so a retried `contain` finishes the job. If a step fails, the error
//! names the steps already done, and the workflow's error step reports that the instance is
//! partly contained.

use crate::cloud::{Cloud, ProtectionKind};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::model::{
    CASE_TAG, CONTAINED_TAG, InstanceFacts, MANAGED_TAG, STATUS_TAG, Status, Subject, Target,
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
    // never had only gives its role airf's boundary, which denies nothing else; missing one
    // would leave stolen credentials working.
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
    /// Sessions from this instance issued before this time (RFC 3339) are revoked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_before: Option<String>,
    /// Roles whose sessions could not be revoked: why, and what the responder must do. Always
    /// written, empty or not: the workflow's summary reads it by path.
    #[serde(default)]
    pub not_revoked: Vec<String>,
    /// Snapshots taken.
    pub snapshots: Vec<String>,
    /// Protections EC2 applied.
    #[serde(default)]
    pub protections_applied: Vec<ProtectionKind>,
    /// Protections EC2 refused, with its answer (a Spot instance refuses both).
    #[serde(default)]
    pub protections_refused: BTreeMap<ProtectionKind, String>,
}

impl Containment {
    /// One sentence on the protections, for the notification.
    pub fn protection_note(&self) -> String {
        let names = |p: &[ProtectionKind]| {
            p.iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(" and ")
        };
        let mut note = String::new();
        if !self.protections_applied.is_empty() {
            note.push_str(&format!(
                "Protection on: {}.",
                names(&self.protections_applied)
            ));
        }
        if !self.protections_refused.is_empty() {
            let refused: Vec<ProtectionKind> = self.protections_refused.keys().copied().collect();
            let why: Vec<String> = self
                .protections_refused
                .iter()
                .map(|(p, e)| format!("{}: {e}", p.as_str()))
                .collect();
            if !note.is_empty() {
                note.push(' ');
            }
            note.push_str(&format!(
                "Protection REFUSED by EC2: {} ({}). The network is isolated and the volumes are kept \
                 and snapshotted, but anyone allowed ec2:TerminateInstances or ec2:StopInstances can still end \
                 the instance and its memory: restrict those in the account until the case is closed.",
                names(&refused),
                why.join("; ")
            ));
        }
        note
    }
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
                    "{}Isolation group {}; instance profile {}; snapshots: {}.\n{}\nSteps: {}.",
                    not_revoked_warning(&done.not_revoked),
                    done.isolation_group,
                    config.isolation_profile_name,
                    if done.snapshots.is_empty() {
                        "none".to_owned()
                    } else {
                        done.snapshots.join(", ")
                    },
                    done.protection_note(),
                    done.steps.join("; ")
                ),
            )
            .await?;
            Ok(done)
        }
        Err(e) => Err(incomplete("contain", "", &done.steps, e)),
    }
}

/// The notification's first lines when some sessions could not be revoked: the responder must
/// act, so it comes before everything else.
fn not_revoked_warning(not_revoked: &[String]) -> String {
    if not_revoked.is_empty() {
        return String::new();
    }
    let list: Vec<String> = not_revoked.iter().map(|g| format!("- {g}")).collect();
    format!(
        "ACTION NEEDED: earlier sessions of these roles are NOT revoked; credentials the \
         instance had still work until they expire.\n{}\n\n",
        list.join("\n")
    )
}

/// The error of a step that changed some things and not others: "containment incomplete" (which
/// fail.rs recognises, to say the instance is partly contained) with what was done; still
/// retryable when the cause was.
pub(super) fn incomplete(operation: &'static str, what: &str, steps: &[String], e: Error) -> Error {
    let so_far = if steps.is_empty() {
        "nothing".to_owned()
    } else {
        steps.join("; ")
    };
    let message = format!("containment incomplete ({what}done: {so_far}): {e}");
    match e.kind() {
        crate::error::Kind::Transient => Error::Aws {
            operation,
            message,
            retryable: true,
        },
        _ => Error::failed(message),
    }
}

/// Takes the instance out of its Auto Scaling group, if it is in one, so the group neither
/// replaces nor terminates it; returns the group.
pub(super) async fn leave_auto_scaling_group<C: Cloud>(
    cloud: &C,
    target: &Target,
    steps: &mut Vec<String>,
) -> Result<Option<String>> {
    let Some(group) = cloud.auto_scaling_group(target).await? else {
        return Ok(None);
    };
    cloud.detach_from_auto_scaling_group(target, &group).await?;
    steps.push(format!("detached from Auto Scaling group {group}"));
    Ok(Some(group))
}

/// Deregisters the instance from every target group, so no more requests reach it; returns the
/// groups' ARNs.
pub(super) async fn leave_target_groups<C: Cloud>(
    cloud: &C,
    target: &Target,
    steps: &mut Vec<String>,
) -> Result<Vec<String>> {
    let mut left = Vec::new();
    for registration in cloud.target_registrations(target).await? {
        cloud.deregister(target, &registration).await?;
        steps.push(format!(
            "deregistered from {}",
            registration.target_group_arn
        ));
        left.push(registration.target_group_arn);
    }
    Ok(left)
}

/// Puts every interface in the single group `last` through the allow-all `untrack` group first,
/// so the connections tracked now become untracked and `last`'s rules cut them (a group swap
/// alone leaves tracked connections open). Nothing to do when every interface is in `last` alone.
pub(super) async fn swap_groups<C: Cloud>(
    cloud: &C,
    target: &Target,
    facts: &InstanceFacts,
    untrack: &str,
    last: &str,
    steps: &mut Vec<String>,
) -> Result<()> {
    if facts.interfaces.iter().all(|i| i.groups == [last]) {
        return Ok(());
    }
    for interface in &facts.interfaces {
        cloud
            .set_interface_groups(target, &interface.id, &[untrack.to_owned()])
            .await?;
    }
    steps.push(format!("connections untracked ({untrack})"));
    for interface in &facts.interfaces {
        cloud
            .set_interface_groups(target, &interface.id, &[last.to_owned()])
            .await?;
    }
    Ok(())
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
    // What release needs, recorded before anything changes (contain-first recorded it at
    // isolate already, and a record is never overwritten).
    if let super::isolate::Recorded::NotRecorded(why) =
        super::isolate::record_restore_state(cloud, config, case_id, &facts).await?
    {
        done.steps
            .push(format!("state to restore NOT recorded: {why}"));
    }

    done.auto_scaling_group = leave_auto_scaling_group(cloud, target, &mut done.steps).await?;

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
    swap_groups(cloud, target, &facts, &untrack, &isolation, &mut done.steps).await?;
    done.steps.push(format!("network isolated ({isolation})"));

    done.target_groups = leave_target_groups(cloud, target, &mut done.steps).await?;

    for protection in ProtectionKind::ALL {
        match cloud.protect(target, protection).await {
            Ok(()) => {
                done.steps
                    .push(format!("{} protection on", protection.as_str()));
                done.protections_applied.push(protection);
            }
            // Throttling: the workflow retries the whole step, which repeats nothing done.
            Err(e) if e.kind() == crate::error::Kind::Transient => return Err(e),
            // Refused (a Spot instance, or a policy): recorded and reported, not fatal.
            Err(e) => {
                done.steps
                    .push(format!("{} protection refused", protection.as_str()));
                done.protections_refused.insert(protection, e.to_string());
            }
        }
    }
    if !plan.keep_devices.is_empty() {
        cloud.keep_volumes(target, &plan.keep_devices).await?;
        done.steps.push(format!(
            "DeleteOnTermination=false on {}",
            plan.keep_devices.join(", ")
        ));
    }

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
    let revocation = revoke::revoke(cloud, config, target, &plan.revoke_profiles, now).await?;
    for role in &revocation.revoked_roles {
        done.steps.push(format!(
            "sessions of role {role} from this instance before {} revoked",
            revocation.before
        ));
    }
    for gap in &revocation.not_revoked {
        done.steps.push(format!("sessions NOT revoked: {gap}"));
    }
    done.revoked_before = Some(revocation.before);
    done.revoked_roles = revocation.revoked_roles;
    done.not_revoked = revocation.not_revoked;

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
        cloud.lock().fail_on = Some(("PutRolePermissionsBoundary".into(), true));
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

    fn web_server(instance: &str) -> crate::fake::FakeCloud {
        let mut f = facts(instance);
        f.profile = Some(ProfileAssociation {
            association_id: "iip-assoc-1".into(),
            profile_arn: "arn:aws:iam::111111111111:instance-profile/WebServer".into(),
        });
        crate::fake::FakeCloud::with(f)
    }

    const BOUNDARY: &str = "arn:aws:iam::111111111111:policy/AirfRevokedSessions";
    const NOW: &str = "2026-11-29T18:00:00Z";

    fn contained(cloud: &crate::fake::FakeCloud) -> bool {
        let s = cloud.lock();
        s.instances["i-0123456789abcdef0"]
            .tags
            .get("SecurityIncidentStatus")
            .is_some_and(|t| t == "Contain")
            && s.snapshots.len() == 1
    }

    /// Issue 12, finding 1: template 4 denies the member role any change to airf's roles, the
    /// acquisition role included. Revoking must not need one, and containment must reach its
    /// snapshots and the Contain tag. (On main, `contain` put an inline policy on
    /// AirfAcquisitionInstanceRole: AccessDenied, and the step failed after the group swap.)
    #[tokio::test]
    async fn containment_completes_although_airf_roles_may_never_change() {
        let cloud = web_server("i-0123456789abcdef0");
        let done = contain(&cloud, &test_config(), "IR-1", &subject(), NOW)
            .await
            .unwrap();
        assert!(contained(&cloud), "{done:?}");
        assert_eq!(
            done.revoked_roles,
            ["AirfAcquisitionInstanceRole", "WebServerRole"],
            "the acquisition role through the template's boundary, and the workload's role"
        );
        assert!(done.not_revoked.is_empty(), "{:?}", done.not_revoked);
        let s = cloud.lock();
        let changed: Vec<&String> = s
            .calls
            .iter()
            .filter(|c| c.starts_with("PutRolePermissionsBoundary"))
            .collect();
        assert_eq!(
            changed,
            [&format!(
                "PutRolePermissionsBoundary WebServerRole {BOUNDARY}"
            )],
            "only the workload's role is changed"
        );
        let document = s.policies[BOUNDARY].default_document().unwrap();
        let boundary = revoke::boundary::Boundary::parse(document).unwrap();
        let instance = subject().target.instance_arn();
        assert!(boundary.covers(1_795_975_200, &instance), "{document}");
        assert_eq!(done.revoked_before.as_deref(), Some(NOW));
    }

    /// An older template 4 (the acquisition role without the boundary): IAM refuses the change,
    /// as the template says; the result says so and containment still completes.
    #[tokio::test]
    async fn a_refused_boundary_is_reported_and_containment_goes_on() {
        let cloud = web_server("i-0123456789abcdef0");
        cloud.lock().boundaries.clear();
        let done = contain(&cloud, &test_config(), "IR-1", &subject(), NOW)
            .await
            .unwrap();
        assert!(contained(&cloud));
        assert_eq!(done.revoked_roles, ["WebServerRole"]);
        assert!(
            matches!(done.not_revoked.as_slice(), [gap] if gap.contains("AirfAcquisitionInstanceRole")
                && gap.contains("with an explicit deny in an identity-based policy")
                && gap.contains("Revoke active sessions")),
            "{:?}",
            done.not_revoked
        );
        let published = cloud.lock().published.clone();
        assert!(
            published.iter().all(|(_, _, m)| m.contains("ACTION NEEDED")
                && m.contains("AirfAcquisitionInstanceRole")),
            "{published:?}"
        );
    }

    /// EC2 refuses termination and stop protection on Spot instances (`UnsupportedOperation`):
    /// the instance is isolated first all the same, contained to the end, and the refusal is in
    /// the result and the notification.
    #[tokio::test]
    async fn a_spot_instance_is_isolated_and_contained_with_its_protection_refused() {
        let cloud = crate::fake::FakeCloud::with(facts("i-0123456789abcdef0"));
        cloud.lock().spot.push("i-0123456789abcdef0".into());
        let done = contain(
            &cloud,
            &test_config(),
            "IR-1",
            &subject(),
            "2026-11-29T18:00:00Z",
        )
        .await
        .unwrap();
        assert!(done.protections_applied.is_empty(), "{done:?}");
        assert_eq!(
            done.protections_refused.keys().copied().collect::<Vec<_>>(),
            [ProtectionKind::Termination, ProtectionKind::Stop]
        );
        assert!(
            done.protections_refused
                .values()
                .all(|why| why.contains("UnsupportedOperation") && why.contains("spot")),
            "{done:?}"
        );
        let s = cloud.lock();
        let position = |prefix: &str| s.calls.iter().position(|c| c.starts_with(prefix));
        let isolated = s.calls.iter().position(|c| {
            c.contains("ModifyNetworkInterfaceAttribute") && c.contains("sg-airf-isolation")
        });
        assert!(
            isolated.is_some() && isolated < position("ModifyInstanceAttribute"),
            "isolation before protection: {:#?}",
            s.calls
        );
        let instance = &s.instances["i-0123456789abcdef0"];
        assert_eq!(instance.interfaces[0].groups, ["sg-airf-isolation"]);
        assert_eq!(instance.tag("SecurityIncidentStatus"), Some("Contain"));
        assert!(
            s.published
                .iter()
                .all(|(_, _, m)| m.contains("Protection REFUSED by EC2: termination and stop")),
            "{:?}",
            s.published
        );
    }

    /// A throttled protection is retried (the step fails Transient), not recorded as refused.
    #[tokio::test]
    async fn a_throttled_protection_is_retried_not_refused() {
        let cloud = crate::fake::FakeCloud::with(facts("i-0123456789abcdef0"));
        cloud.lock().fail_on = Some(("ModifyInstanceAttribute".into(), true));
        let (config, subject) = (test_config(), subject());
        let run = || contain(&cloud, &config, "IR-1", &subject, "2026-11-29T18:00:00Z");
        let first = run().await;
        assert!(
            matches!(&first, Err(e) if e.kind() == crate::error::Kind::Transient),
            "{first:?}"
        );
        let second = run().await.unwrap();
        assert_eq!(second.protections_applied, ProtectionKind::ALL);
        assert!(second.protections_refused.is_empty());
    }

    /// A role with its own boundary keeps it: replacing it could widen the role.
    #[tokio::test]
    async fn a_role_with_its_own_boundary_is_not_widened_and_the_responder_is_told() {
        let cloud = web_server("i-0123456789abcdef0");
        let theirs = "arn:aws:iam::111111111111:policy/TeamBoundary";
        cloud
            .lock()
            .boundaries
            .insert("WebServerRole".into(), theirs.into());
        let done = contain(&cloud, &test_config(), "IR-1", &subject(), NOW)
            .await
            .unwrap();
        assert!(contained(&cloud));
        assert_eq!(done.revoked_roles, ["AirfAcquisitionInstanceRole"]);
        assert!(
            matches!(done.not_revoked.as_slice(), [gap] if gap.contains(theirs)
                && gap.contains("Roles > WebServerRole > Revoke sessions")),
            "{:?}",
            done.not_revoked
        );
        let s = cloud.lock();
        assert_eq!(s.boundaries["WebServerRole"], theirs);
        assert!(
            !s.calls
                .iter()
                .any(|c| c.starts_with("PutRolePermissionsBoundary"))
        );
        assert!(s.published.iter().all(|(_, _, m)| m.contains(theirs)));
    }

    /// Finding 1's second half: a revocation per containment, kept only as long as a credential
    /// can live, in one policy of at most five versions. A hundred containments, one every two
    /// hours, never fill it, and never hit IAM's limits (the fake enforces them). (A policy per
    /// instance, as on main, would have filled a role's 10,240 characters after about 30.)
    #[tokio::test]
    async fn revocations_stay_bounded_over_many_investigations() {
        let cloud = web_server("i-0123456789abcdef0");
        let config = test_config();
        let start = 1_795_975_200i64;
        for n in 0..100i64 {
            let id = format!("i-{:017x}", n + 1);
            let mut f = facts(&id);
            f.profile = Some(ProfileAssociation {
                association_id: format!("iip-assoc-{n}"),
                profile_arn: "arn:aws:iam::111111111111:instance-profile/WebServer".into(),
            });
            let when = start + n * 7200;
            cloud.lock().instances.insert(id.clone(), f.clone());
            cloud.lock().clock = when;
            let now = revoke::boundary::rfc3339(when);
            let subject = Subject {
                target: f.target,
                claim: 1,
            };
            let done = contain(&cloud, &config, &format!("IR-{n}"), &subject, &now)
                .await
                .unwrap();
            assert!(done.not_revoked.is_empty(), "{n}: {:?}", done.not_revoked);
        }
        let s = cloud.lock();
        let policy = &s.policies[BOUNDARY];
        assert!(policy.versions.len() <= 5);
        let b = revoke::boundary::Boundary::parse(policy.default_document().unwrap()).unwrap();
        assert_eq!(
            b.entries().count(),
            19,
            "the last 36 h and a quarter, one containment every two hours"
        );
    }

    #[test]
    fn an_instance_outside_a_vpc_cannot_be_planned() {
        let mut f = facts("i-0123456789abcdef0");
        f.vpc_id = None;
        assert!(plan(&f, &test_config()).is_err());
    }
}
