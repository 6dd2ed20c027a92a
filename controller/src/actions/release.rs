//! `release`: a false positive gets its service back. From the record that `isolate` or `contain`
//! wrote on the instance before changing it ([`record`](super::isolate::record)):
//!
//! 1. its security groups on each interface;
//! 2. airf's instance profile taken off; the instance's own profile is NOT put back by airf, but
//!    named with the one command that does it (see below);
//! 3. its termination and stop protection flags;
//! 4. its Auto Scaling group (AttachInstances) and target-group registrations;
//! 5. the tags `SecurityIncidentStatus=Released` and `airf:released=<case>`; the record and
//!    airf's containment tags are deleted, so a later incident records afresh.
//!
//! Every step compares before it changes, so a retried or repeated release does nothing twice.
//! The revocation of earlier sessions stays: it denies only credentials issued before containment
//! began, so the profile's new credentials work, and it is part of the case's record.
//!
//! Why not the profile: associating a profile passes its role (`iam:PassRole`). A controller
//! allowed to pass any role of the account could, if compromised, give an instance it controls
//! any role, and so administer the account (issue 12, finding 8). airf may pass only its own two
//! instance roles; the responder, who decided the release, restores the instance's own.
//!
//! An instance whose investigation or acquisition is still running is refused: giving it back
//! while the agent reads its disks, or before `contain` runs again, would undo the release.

use crate::actions::isolate::record::{self, RestoreRecord};
use crate::actions::isolate::{ISOLATION_REASON_TAG, ISOLATION_TAG};
use crate::actions::prepare::PREVIOUS_PROFILE_TAG;
use crate::cloud::Cloud;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::model::{CASE_TAG, CONTAINED_TAG, INVESTIGATIONS_TAG, STATUS_TAG, Status, Subject};
use crate::notify::notify;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Set by release, to the case.
pub const RELEASED_TAG: &str = "airf:released";

/// What `release` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// Steps done, in order.
    pub steps: Vec<String>,
    /// Whether it had been released before (nothing to do).
    pub already_released: bool,
    /// The instance profile the instance had before airf, which the responder restores with
    /// `restore_profile_command` (airf does not pass the instance's own roles).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_to_restore: Option<String>,
    /// The AWS CLI command that gives the instance its profile back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_profile_command: Option<String>,
}

fn is_airf_document(document: &str, config: &Config) -> bool {
    let name = document.rsplit('/').next().unwrap_or(document);
    name == config.memory_document
        || name == config.disk_document
        || name == config.triage_document
        || name.starts_with("airf-")
}

/// Releases the instance.
pub async fn release<C: Cloud>(
    cloud: &C,
    config: &Config,
    case_id: &str,
    subject: &Subject,
) -> Result<Release> {
    let target = &subject.target;
    let facts = super::instance(cloud, target).await?;
    if facts.status() == Some(Status::InProgress) {
        return Err(Error::failed(format!(
            "case {} is still running on {} (SecurityIncidentStatus=InProgress): release it once the \
             investigation has ended, or stop its Step Functions execution first",
            facts.tag(CASE_TAG).unwrap_or("(unknown)"),
            target.instance_id
        )));
    }
    let running: Vec<(String, String)> = cloud
        .running_commands(target)
        .await?
        .into_iter()
        .filter(|(_, document)| is_airf_document(document, config))
        .collect();
    if let Some((command, document)) = running.first() {
        return Err(Error::failed(format!(
            "acquisition is still running on {}: command {command} ({document}). Releasing now would \
             give the instance back while the agent reads it. Wait until it ends, or cancel it \
             (aws ssm cancel-command --command-id {command}), then release again",
            target.instance_id
        )));
    }
    let Some(rec) = RestoreRecord::from_tags(&facts.tags).map_err(Error::failed)? else {
        if facts.status() == Some(Status::Released) {
            return Ok(Release {
                steps: vec!["released before; nothing to do".into()],
                already_released: true,
                ..Release::default()
            });
        }
        return Err(Error::failed(format!(
            "{} carries no restore record ({}): airf did not contain it, or contained it before it \
             recorded the state to restore. Restore it by hand (groups, instance profile, protection, \
             Auto Scaling group, target groups)",
            target.instance_id,
            record::CASE_TAG
        )));
    };
    let mut done = Release::default();

    for interface in &facts.interfaces {
        let Some(groups) = rec.groups.get(&interface.id) else {
            continue;
        };
        if interface.groups != *groups {
            cloud
                .set_interface_groups(target, &interface.id, groups)
                .await?;
            done.steps
                .push(format!("{} back in {}", interface.id, groups.join(", ")));
        }
    }

    // The profile it had: recorded by isolate/contain, else by prepare or contain when they
    // replaced it; neither: it had none.
    let wanted: Option<String> = match &rec.profile {
        Some(p) => p.clone(),
        None => facts.tag(PREVIOUS_PROFILE_TAG).map(str::to_owned),
    };
    let wanted_name = wanted
        .as_deref()
        .map(|arn| arn.rsplit('/').next().unwrap_or(arn).to_owned());
    if let Some(name) = &wanted_name
        && (*name == config.acquisition_profile_name || *name == config.isolation_profile_name)
    {
        return Err(Error::failed(format!(
            "the recorded previous instance profile is airf's own ({name}); restore the profile by hand"
        )));
    }
    // airf's profile comes off (deny-all after contain, acquisition after isolate); the
    // instance's own is named for the responder, never associated by airf (module doc).
    if let Some(current) = &facts.profile {
        let name = current.profile_name();
        if name == config.isolation_profile_name || name == config.acquisition_profile_name {
            cloud
                .disassociate_profile(target, &current.association_id)
                .await?;
            done.steps
                .push(format!("airf's instance profile {name} removed"));
        }
    }
    if let Some(name) = &wanted_name {
        let command = format!(
            "aws ec2 associate-iam-instance-profile --region {} --instance-id {} \
             --iam-instance-profile Name={name}",
            target.region, target.instance_id
        );
        done.steps.push(format!(
            "instance profile {name} NOT restored by airf (it may not pass the instance's own \
             roles); restore it with: {command}"
        ));
        done.profile_to_restore = Some(name.clone());
        done.restore_profile_command = Some(command);
    }

    if cloud.protection(target).await? != rec.protection {
        cloud.set_protection(target, rec.protection).await?;
        done.steps.push(format!(
            "termination protection {}, stop protection {}",
            on_off(rec.protection.termination),
            on_off(rec.protection.stop)
        ));
    }

    if let Some(group) = &rec.auto_scaling_group
        && cloud.auto_scaling_group(target).await?.as_deref() != Some(group.as_str())
    {
        cloud.attach_to_auto_scaling_group(target, group).await?;
        done.steps
            .push(format!("back in Auto Scaling group {group}"));
    }
    for registration in &rec.target_groups {
        cloud.register(target, registration).await?;
        done.steps
            .push(format!("registered in {}", registration.target_group_arn));
    }

    // Released first, then the record goes: a retry after a failure in between finds the record
    // and redoes nothing but the deletion.
    let investigations = facts.investigations().max(subject.claim);
    let tags = BTreeMap::from([
        (STATUS_TAG.to_owned(), Status::Released.as_str().to_owned()),
        (RELEASED_TAG.to_owned(), case_id.to_owned()),
        // The next investigation gets a new number (and execution name).
        (INVESTIGATIONS_TAG.to_owned(), investigations.to_string()),
    ]);
    cloud.tag_instance(target, &tags).await?;
    done.steps
        .push("tagged SecurityIncidentStatus=Released".into());
    let mut keys = record::restore_keys(&facts.tags);
    for key in [
        PREVIOUS_PROFILE_TAG,
        CONTAINED_TAG,
        ISOLATION_TAG,
        ISOLATION_REASON_TAG,
    ] {
        if facts.tags.contains_key(key) {
            keys.push(key.to_owned());
        }
    }
    cloud.untag_instance(target, &keys).await?;
    done.steps
        .push(format!("restore record of case {} deleted", rec.case_id));

    notify(
        cloud,
        config,
        case_id,
        target,
        "instance released",
        &format!(
            "Released as a false positive.\nSteps: {}.\nSessions issued before containment stay revoked \
             (the AirfRevokedSessions boundary denies only credentials issued before containment \
             began); the evidence and snapshots are kept.",
            if done.steps.is_empty() {
                "none needed".to_owned()
            } else {
                done.steps.join("; ")
            }
        ),
    )
    .await?;
    Ok(done)
}

fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}

#[cfg(test)]
mod tests;
