//! `prepare` and `managed`: give the instance the SSM-capable instance profile (recording the
//! one it had), tell the responders, then wait until SSM can reach it.
//!
//! `prepare` also decides where the evidence comes from, for the workflow's choices: disks from
//! the agent on the instance, or from EBS snapshots (the `airf:disk-source=snapshot` tag, or a
//! stopped instance); memory from the agent, or not at all (a stopped instance has none). A
//! stopped instance is left as it is: no profile to swap, nothing runs on it.

use crate::cloud::Cloud;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::model::{DISK_SOURCE_TAG, DiskSource, InstanceState, ProfileAssociation, Subject};
use crate::notify::notify;
use serde::{Deserialize, Serialize};

/// Tag recording the instance profile the instance had before airf replaced it.
pub const PREVIOUS_PROFILE_TAG: &str = "airf:previous-profile";

/// What to do about the instance profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProfileStep {
    /// It already has the acquisition profile.
    Keep,
    /// It has none: associate.
    Associate,
    /// It has another: replace, recording the old one.
    Replace {
        /// Association to replace.
        association_id: String,
        /// The profile it had.
        previous_arn: String,
    },
}

/// Decides the profile step.
pub fn decide(current: Option<&ProfileAssociation>, acquisition_profile: &str) -> ProfileStep {
    match current {
        None => ProfileStep::Associate,
        Some(a) if a.profile_name() == acquisition_profile => ProfileStep::Keep,
        Some(a) => ProfileStep::Replace {
            association_id: a.association_id.clone(),
            previous_arn: a.profile_arn.clone(),
        },
    }
}

/// Whether memory is acquired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemoryPlan {
    /// By the agent on the instance, through SSM.
    Ssm,
    /// Not at all ([`Prepared::memory_not_acquired`] says why).
    NotAcquired,
}

/// What `prepare` did, and where the evidence comes from (the workflow's choices read it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prepared {
    /// `kept`, `associated`, `replaced`, or `unchanged` (a stopped instance).
    pub profile: String,
    /// The profile the instance had, when replaced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_profile_arn: Option<String>,
    /// Where the disks are read from.
    pub disks: DiskSource,
    /// Whether memory is acquired.
    pub memory: MemoryPlan,
    /// Why memory is not acquired; empty when it is.
    pub memory_not_acquired: String,
    /// Whether the snapshot task is deployed: an instance SSM never reaches then has its disks
    /// imaged from snapshots instead of ending in Error.
    pub snapshots_deployed: bool,
}

/// Where the evidence of an instance in `state` comes from, given its [`DISK_SOURCE_TAG`]; an
/// error when what it needs is not deployed (or the instance is gone).
pub fn route(
    instance_id: &str,
    state: InstanceState,
    disk_tag: Option<&str>,
    snapshots_deployed: bool,
) -> Result<(DiskSource, MemoryPlan, String)> {
    let asked = DiskSource::from_tag(disk_tag).map_err(Error::failed)?;
    let not_deployed = "the snapshot task that images disks from EBS snapshots is not deployed \
                        (template 3's snapshot parameters; AIRF_SNAPSHOT_* in the controller's environment)";
    match state {
        InstanceState::Gone => Err(Error::failed(format!(
            "{instance_id} is shutting down or terminated: nothing left to acquire"
        ))),
        InstanceState::Stopped if snapshots_deployed => Ok((
            DiskSource::Snapshot,
            MemoryPlan::NotAcquired,
            "the instance is stopped (its memory is gone)".to_owned(),
        )),
        InstanceState::Stopped => Err(Error::failed(format!(
            "{instance_id} is not running: memory cannot be taken and SSM cannot run commands, and {not_deployed}; \
             tag it Contain to isolate it and snapshot its volumes"
        ))),
        InstanceState::Running if asked == DiskSource::Snapshot && !snapshots_deployed => {
            Err(Error::failed(format!(
                "{instance_id} is tagged {DISK_SOURCE_TAG}=snapshot, but {not_deployed}: remove the tag to \
                 acquire its disks with the agent on the instance"
            )))
        }
        InstanceState::Running => Ok((asked, MemoryPlan::Ssm, String::new())),
    }
}

/// Attaches the acquisition profile and notifies.
pub async fn prepare<C: Cloud>(
    cloud: &C,
    config: &Config,
    case_id: &str,
    subject: &Subject,
) -> Result<Prepared> {
    let target = &subject.target;
    let facts = super::instance(cloud, target).await?;
    let snapshots_deployed = config.snapshot.is_some();
    let (disks, memory, memory_not_acquired) = route(
        &target.instance_id,
        facts.state,
        facts.tag(DISK_SOURCE_TAG),
        snapshots_deployed,
    )?;
    if memory == MemoryPlan::NotAcquired {
        // Nothing runs on a stopped instance: its profile stays, and snapshot_plan notifies.
        return Ok(Prepared {
            profile: "unchanged".into(),
            previous_profile_arn: None,
            disks,
            memory,
            memory_not_acquired,
            snapshots_deployed,
        });
    }
    if target.region != config.evidence_region
        && let Some(routes) = cloud.subnet_routes(target).await?
    {
        super::egress::check(
            &routes,
            &target.instance_id,
            &target.region,
            &config.evidence_region,
        )
        .map_err(Error::failed)?;
    }
    let step = decide(facts.profile.as_ref(), &config.acquisition_profile_name);
    let prepared = match &step {
        ProfileStep::Keep => Prepared {
            profile: "kept".into(),
            previous_profile_arn: None,
            disks,
            memory,
            memory_not_acquired,
            snapshots_deployed,
        },
        ProfileStep::Associate => {
            cloud
                .associate_profile(target, &config.acquisition_profile_name)
                .await?;
            Prepared {
                profile: "associated".into(),
                previous_profile_arn: None,
                disks,
                memory,
                memory_not_acquired,
                snapshots_deployed,
            }
        }
        ProfileStep::Replace {
            association_id,
            previous_arn,
        } => {
            // Recorded before the swap, so the old profile is known even if the swap half-fails.
            let tags = [(PREVIOUS_PROFILE_TAG.to_owned(), previous_arn.clone())]
                .into_iter()
                .collect();
            cloud.tag_instance(target, &tags).await?;
            cloud
                .replace_profile(target, association_id, &config.acquisition_profile_name)
                .await?;
            Prepared {
                profile: "replaced".into(),
                previous_profile_arn: Some(previous_arn.clone()),
                disks,
                memory,
                memory_not_acquired,
                snapshots_deployed,
            }
        }
    };
    let profile_note = match &prepared.previous_profile_arn {
        Some(old) => format!(
            "Instance profile {old} replaced by {}.",
            config.acquisition_profile_name
        ),
        None => format!(
            "Instance profile {} {}.",
            config.acquisition_profile_name, prepared.profile
        ),
    };
    notify(
        cloud,
        config,
        case_id,
        target,
        "investigation started",
        &format!(
            "{profile_note}\nNext: memory and disk acquisition into s3://{}/{}/{case_id}/{}/, then containment. {}\n\
             If SSM does not report {} online within a few minutes, its SSM Agent is probably waiting out the 25 to 30 \
             minutes it backs off after being denied credentials. Fast path: on the instance, restart the agent \
             (sudo systemctl restart amazon-ssm-agent; snap installs: sudo snap restart amazon-ssm-agent) or reboot it. \
             airf waits 40 minutes for it, then {}.",
            config.evidence_bucket,
            config.evidence_prefix,
            target.instance_id,
            match disks {
                DiskSource::Snapshot => format!(
                    "Disks: from EBS snapshots, as its tag {DISK_SOURCE_TAG}=snapshot asks (memory: by the agent)."
                ),
                DiskSource::Ssm => format!(
                    "Disks: by the agent on the instance (tag it {DISK_SOURCE_TAG}=snapshot before the trigger to image \
                     them from EBS snapshots instead)."
                ),
            },
            target.instance_id,
            if snapshots_deployed {
                "images its disks from EBS snapshots without its memory"
            } else {
                "records an error"
            }
        ),
    )
    .await?;
    Ok(prepared)
}

/// Ok once SSM reports the instance online; `Airf.Pending` before (the workflow retries).
pub async fn managed<C: Cloud>(cloud: &C, subject: &Subject) -> Result<bool> {
    if cloud.ssm_online(&subject.target).await? {
        return Ok(true);
    }
    Err(Error::Pending(format!(
        "{} is not SSM-managed yet: the SSM Agent picks up the new instance profile within minutes, if it runs \
         and can reach the ssm, ssmmessages and ec2messages endpoints",
        subject.target.instance_id
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assoc(name: &str) -> ProfileAssociation {
        ProfileAssociation {
            association_id: "iip-assoc-1".into(),
            profile_arn: format!("arn:aws:iam::111111111111:instance-profile/{name}"),
        }
    }

    #[test]
    fn evidence_routes() {
        use InstanceState::*;
        let ok =
            |state, tag, deployed| route("i-1", state, tag, deployed).map_err(|e| e.to_string());
        assert_eq!(
            ok(Running, None, true),
            Ok((DiskSource::Ssm, MemoryPlan::Ssm, String::new()))
        );
        assert_eq!(
            ok(Running, Some("snapshot"), true),
            Ok((DiskSource::Snapshot, MemoryPlan::Ssm, String::new()))
        );
        let stopped = ok(Stopped, None, true).unwrap();
        assert_eq!(
            (stopped.0, stopped.1),
            (DiskSource::Snapshot, MemoryPlan::NotAcquired)
        );
        assert!(stopped.2.contains("stopped"), "{}", stopped.2);
        // Not deployed: as before, an error that names what is missing.
        for (state, tag) in [(Stopped, None), (Running, Some("snapshot"))] {
            let e = ok(state, tag, false).unwrap_err();
            assert!(e.contains("AIRF_SNAPSHOT_*"), "{e}");
        }
        assert!(
            ok(Stopped, None, false)
                .unwrap_err()
                .contains("not running")
        );
        assert!(ok(Gone, None, true).unwrap_err().contains("terminated"));
        assert!(
            ok(Running, Some("snap"), true)
                .unwrap_err()
                .contains("airf:disk-source")
        );
    }

    /// A stopped instance with the snapshot task deployed: nothing is changed or sent (its
    /// profile stays; snapshot_plan notifies), and the answer routes it to its snapshots.
    #[test]
    fn a_stopped_instance_is_left_as_it_is() {
        use crate::fake::{FakeCloud, facts, subject};
        let mut f = facts("i-0123456789abcdef0");
        f.state = InstanceState::Stopped;
        let cloud = FakeCloud::with(f);
        let config = crate::config::test_config_with_snapshots();
        let prepared = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(prepare(
                &cloud,
                &config,
                "IR-1",
                &subject("i-0123456789abcdef0"),
            ))
            .unwrap();
        assert_eq!(prepared.profile, "unchanged");
        assert_eq!(prepared.memory, MemoryPlan::NotAcquired);
        assert_eq!(prepared.disks, DiskSource::Snapshot);
        assert!(prepared.snapshots_deployed);
        assert!(cloud.lock().calls.is_empty(), "{:?}", cloud.lock().calls);
        let json = serde_json::to_value(&prepared).unwrap();
        assert_eq!(json["memory"], "not_acquired");
        assert_eq!(json["disks"], "snapshot");
    }

    #[test]
    fn profile_steps() {
        assert_eq!(decide(None, "Acq"), ProfileStep::Associate);
        assert_eq!(decide(Some(&assoc("Acq")), "Acq"), ProfileStep::Keep);
        assert_eq!(
            decide(Some(&assoc("WebServer")), "Acq"),
            ProfileStep::Replace {
                association_id: "iip-assoc-1".into(),
                previous_arn: "arn:aws:iam::111111111111:instance-profile/WebServer".into()
            }
        );
    }
}
