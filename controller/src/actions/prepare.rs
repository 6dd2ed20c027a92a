//! `prepare` and `managed`: give the instance the SSM-capable instance profile (recording the
//! one it had), tell the responders, then wait until SSM can reach it.

use crate::cloud::Cloud;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::model::{InstanceState, ProfileAssociation, Subject};
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

/// What `prepare` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prepared {
    /// `kept`, `associated` or `replaced`.
    pub profile: String,
    /// The profile the instance had, when replaced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_profile_arn: Option<String>,
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
    if facts.state != InstanceState::Running {
        return Err(Error::failed(format!(
            "{} is not running: memory cannot be taken and SSM cannot run commands; tag it Contain to isolate it \
             and snapshot its volumes",
            target.instance_id
        )));
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
        },
        ProfileStep::Associate => {
            cloud
                .associate_profile(target, &config.acquisition_profile_name)
                .await?;
            Prepared {
                profile: "associated".into(),
                previous_profile_arn: None,
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
            "{profile_note}\nNext: memory and disk acquisition into s3://{}/{}/{case_id}/{}/, then containment.\n\
             If SSM does not report {} online within a few minutes, its SSM Agent is probably waiting out the 25 to 30 \
             minutes it backs off after being denied credentials. Fast path: on the instance, restart the agent \
             (sudo systemctl restart amazon-ssm-agent; snap installs: sudo snap restart amazon-ssm-agent) or reboot it. \
             airf waits 40 minutes for it, then records an error.",
            config.evidence_bucket, config.evidence_prefix, target.instance_id, target.instance_id
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
