//! What `release` needs to undo a containment, recorded on the instance itself before anything is
//! changed: tags survive the Lambda, the workflow and its history's retention, and whoever looks at
//! the instance sees them.
//!
//! - `airf:restore:sg:<eni>` = its security groups, space-separated (`…:<eni>:2`, `:3` when more
//!   than fit the 256-character value limit);
//! - `airf:restore:asg` = the Auto Scaling group;
//! - `airf:restore:tg:<n>` = a target group ARN, then a space and the port if it had one;
//! - `airf:restore:protection` = `termination=<bool> stop=<bool>`;
//! - `airf:restore:profile` = the instance profile ARN, or `none`, when airf had not replaced it
//!   yet (else `release` uses `airf:previous-profile`, which prepare and contain write);
//! - `airf:restore:case` = the case that recorded it, written in the same CreateTags call: its
//!   presence means the record is whole.
//!
//! The record is written once: an instance that has one keeps it until `release` deletes it, so a
//! second containment never records the isolation as the state to go back to.

use crate::actions::contain::{ISOLATION_GROUP, UNTRACK_GROUP};
use crate::cloud::{Cloud, Protection, TargetRegistration};
use crate::config::Config;
use crate::error::Result;
use crate::model::InstanceFacts;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Prefix of every restore tag.
pub const PREFIX: &str = "airf:restore:";
/// The case that recorded the state; present: the record is whole.
pub const CASE_TAG: &str = "airf:restore:case";
/// `airf:restore:sg:<eni>`.
const SG_PREFIX: &str = "airf:restore:sg:";
/// `airf:restore:tg:<n>`.
const TG_PREFIX: &str = "airf:restore:tg:";
const ASG_TAG: &str = "airf:restore:asg";
const PROTECTION_TAG: &str = "airf:restore:protection";
const PROFILE_TAG: &str = "airf:restore:profile";
/// EC2: at most 50 tags per resource, values of at most 256 characters.
pub const MAX_TAGS: usize = 50;
const MAX_VALUE: usize = 256;

/// The state to go back to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreRecord {
    /// Case that recorded it.
    pub case_id: String,
    /// Security groups of each interface.
    pub groups: BTreeMap<String, Vec<String>>,
    /// Auto Scaling group it was in.
    pub auto_scaling_group: Option<String>,
    /// Target groups it was registered in.
    pub target_groups: Vec<TargetRegistration>,
    /// Protection flags it had.
    pub protection: Protection,
    /// Instance profile: Some(Some(arn)) it had one, Some(None) it had none, None: not recorded
    /// here (airf had replaced it already; see `airf:previous-profile`).
    pub profile: Option<Option<String>>,
}

/// Splits `items` into space-separated values of at most 256 characters.
fn chunks(items: &[String]) -> Vec<String> {
    let mut out: Vec<String> = vec![String::new()];
    for item in items {
        let fits = out
            .last()
            .is_some_and(|last| last.is_empty() || last.len() + 1 + item.len() <= MAX_VALUE);
        match out.last_mut() {
            Some(last) if fits => {
                if !last.is_empty() {
                    last.push(' ');
                }
                last.push_str(item);
            }
            _ => out.push(item.clone()),
        }
    }
    out
}

/// `sg-…`, `eni-…`: AWS ids are hex after the prefix; letters, digits and dashes are accepted
/// (no spaces, no separators), so a value splits back into exactly the ids it was made of.
fn is_id(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix).is_some_and(|rest| {
        (1..=40).contains(&rest.len())
            && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    })
}

impl RestoreRecord {
    /// The tags that record it.
    pub fn to_tags(&self) -> BTreeMap<String, String> {
        let mut tags = BTreeMap::new();
        for (eni, groups) in &self.groups {
            for (i, value) in chunks(groups).into_iter().enumerate() {
                let key = match i {
                    0 => format!("{SG_PREFIX}{eni}"),
                    n => format!("{SG_PREFIX}{eni}:{}", n + 1),
                };
                tags.insert(key, value);
            }
        }
        if let Some(group) = &self.auto_scaling_group {
            tags.insert(ASG_TAG.to_owned(), group.clone());
        }
        for (i, r) in self.target_groups.iter().enumerate() {
            let value = match r.port {
                Some(port) => format!("{} {port}", r.target_group_arn),
                None => r.target_group_arn.clone(),
            };
            tags.insert(format!("{TG_PREFIX}{}", i + 1), value);
        }
        tags.insert(
            PROTECTION_TAG.to_owned(),
            format!(
                "termination={} stop={}",
                self.protection.termination, self.protection.stop
            ),
        );
        if let Some(profile) = &self.profile {
            tags.insert(
                PROFILE_TAG.to_owned(),
                profile.clone().unwrap_or_else(|| "none".into()),
            );
        }
        tags.insert(CASE_TAG.to_owned(), self.case_id.clone());
        tags
    }

    /// Reads the record from the instance's tags. None: there is none. An error names the tag
    /// that does not read (tags can be edited by anyone with CreateTags).
    pub fn from_tags(tags: &BTreeMap<String, String>) -> Result<Option<Self>, String> {
        let Some(case_id) = tags.get(CASE_TAG) else {
            return Ok(None);
        };
        let bad = |key: &str, value: &str| format!("restore tag {key}={value:?} does not read");
        let mut parts: BTreeMap<(String, u32), Vec<String>> = BTreeMap::new();
        let mut target_groups: BTreeMap<u32, TargetRegistration> = BTreeMap::new();
        let mut protection = None;
        let mut profile = None;
        let mut auto_scaling_group = None;
        for (key, value) in tags.range(PREFIX.to_owned()..) {
            let Some(rest) = key.strip_prefix(PREFIX) else {
                break;
            };
            if let Some(eni) = rest.strip_prefix("sg:") {
                let (eni, n) = match eni.split_once(':') {
                    Some((eni, n)) => (eni, n.parse::<u32>().map_err(|_| bad(key, value))?),
                    None => (eni, 1),
                };
                let groups: Vec<String> = value.split_whitespace().map(str::to_owned).collect();
                if !is_id(eni, "eni-")
                    || groups.is_empty()
                    || !groups.iter().all(|g| is_id(g, "sg-"))
                {
                    return Err(bad(key, value));
                }
                parts.insert((eni.to_owned(), n), groups);
            } else if let Some(n) = rest.strip_prefix("tg:") {
                let n = n.parse::<u32>().map_err(|_| bad(key, value))?;
                let mut words = value.split(' ');
                let arn = words.next().unwrap_or_default();
                let port = match words.next() {
                    Some(p) => Some(
                        p.parse::<i32>()
                            .ok()
                            .filter(|p| (1..=65535).contains(p))
                            .ok_or_else(|| bad(key, value))?,
                    ),
                    None => None,
                };
                if !arn.starts_with("arn:")
                    || !arn.contains(":targetgroup/")
                    || words.next().is_some()
                {
                    return Err(bad(key, value));
                }
                target_groups.insert(
                    n,
                    TargetRegistration {
                        target_group_arn: arn.to_owned(),
                        port,
                    },
                );
            } else if key == PROTECTION_TAG {
                let flag = |name: &str| {
                    value
                        .split(' ')
                        .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
                        .and_then(|v| v.parse::<bool>().ok())
                };
                protection = Some(Protection {
                    termination: flag("termination").ok_or_else(|| bad(key, value))?,
                    stop: flag("stop").ok_or_else(|| bad(key, value))?,
                });
            } else if key == PROFILE_TAG {
                profile = Some(match value.as_str() {
                    "none" => None,
                    arn if arn.starts_with("arn:") && arn.contains(":instance-profile/") => {
                        Some(arn.to_owned())
                    }
                    _ => return Err(bad(key, value)),
                });
            } else if key == ASG_TAG {
                if value.is_empty() {
                    return Err(bad(key, value));
                }
                auto_scaling_group = Some(value.clone());
            }
        }
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for ((eni, _), g) in parts {
            groups.entry(eni).or_default().extend(g);
        }
        if groups.is_empty() {
            return Err(format!(
                "{CASE_TAG} is set but no {SG_PREFIX}<interface> tag: the record is incomplete"
            ));
        }
        Ok(Some(RestoreRecord {
            case_id: case_id.clone(),
            groups,
            auto_scaling_group,
            target_groups: target_groups.into_values().collect(),
            protection: protection
                .ok_or_else(|| format!("{CASE_TAG} is set but {PROTECTION_TAG} is missing"))?,
            profile,
        }))
    }
}

/// Every restore tag key on the instance.
pub fn restore_keys(tags: &BTreeMap<String, String>) -> Vec<String> {
    tags.keys()
        .filter(|k| k.starts_with(PREFIX))
        .cloned()
        .collect()
}

/// What [`record_restore_state`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome", content = "detail")]
pub enum Recorded {
    /// Recorded now.
    Recorded(RestoreRecord),
    /// A record was there already (of this case or an earlier one): kept.
    Kept(String),
    /// Not recorded, and why: release will have to be done by hand. Containment goes on.
    NotRecorded(String),
}

/// Records the instance's state on it, before containment changes anything. Call it first in
/// any step that isolates; it writes nothing if a record exists.
pub async fn record_restore_state<C: Cloud>(
    cloud: &C,
    config: &Config,
    case_id: &str,
    facts: &InstanceFacts,
) -> Result<Recorded> {
    if let Some(case) = facts.tag(CASE_TAG) {
        return Ok(Recorded::Kept(format!("recorded by case {case}")));
    }
    let target = &facts.target;
    if let Some(vpc) = &facts.vpc_id {
        for name in [UNTRACK_GROUP, ISOLATION_GROUP, super::ENDPOINTS_GROUP] {
            if let Some(id) = cloud.security_group_id(target, vpc, name).await?
                && facts.interfaces.iter().any(|i| i.groups.contains(&id))
            {
                return Ok(Recorded::NotRecorded(format!(
                    "the instance is already in airf's group {name}: its state before containment is unknown"
                )));
            }
        }
    }
    let airf_profiles = [
        config.acquisition_profile_name.as_str(),
        config.isolation_profile_name.as_str(),
    ];
    let profile = match &facts.profile {
        None => Some(None),
        Some(p) if airf_profiles.contains(&p.profile_name()) => None,
        Some(p) => Some(Some(p.profile_arn.clone())),
    };
    let record = RestoreRecord {
        case_id: case_id.to_owned(),
        groups: facts
            .interfaces
            .iter()
            .map(|i| (i.id.clone(), i.groups.clone()))
            .collect(),
        auto_scaling_group: cloud.auto_scaling_group(target).await?,
        target_groups: cloud.target_registrations(target).await?,
        protection: cloud.protection(target).await?,
        profile,
    };
    let tags = record.to_tags();
    let total = facts.tags.len() + tags.len();
    if total > MAX_TAGS {
        return Ok(Recorded::NotRecorded(format!(
            "recording needs {} tags and the instance has {}: EC2 allows {MAX_TAGS} per instance \
             (state to restore by hand: {})",
            tags.len(),
            facts.tags.len(),
            serde_json::to_string(&record).unwrap_or_default()
        )));
    }
    cloud.tag_instance(target, &tags).await?;
    Ok(Recorded::Recorded(record))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record() -> RestoreRecord {
        RestoreRecord {
            case_id: "IR-1".into(),
            groups: BTreeMap::from([("eni-1".into(), vec!["sg-a".into(), "sg-b".into()])]),
            auto_scaling_group: Some("web-asg".into()),
            target_groups: vec![TargetRegistration {
                target_group_arn:
                    "arn:aws:elasticloadbalancing:eu-west-1:111111111111:targetgroup/web/0123456789abcdef"
                        .into(),
                port: Some(80),
            }],
            protection: Protection {
                termination: true,
                stop: false,
            },
            profile: Some(Some(
                "arn:aws:iam::111111111111:instance-profile/WebServer".into(),
            )),
        }
    }

    #[test]
    fn the_tags_name_each_part_and_read_back() {
        let r = record();
        let tags = r.to_tags();
        assert_eq!(
            tags,
            BTreeMap::from([
                ("airf:restore:sg:eni-1".to_owned(), "sg-a sg-b".to_owned()),
                ("airf:restore:asg".to_owned(), "web-asg".to_owned()),
                (
                    "airf:restore:tg:1".to_owned(),
                    "arn:aws:elasticloadbalancing:eu-west-1:111111111111:targetgroup/web/0123456789abcdef 80"
                        .to_owned()
                ),
                (
                    "airf:restore:protection".to_owned(),
                    "termination=true stop=false".to_owned()
                ),
                (
                    "airf:restore:profile".to_owned(),
                    "arn:aws:iam::111111111111:instance-profile/WebServer".to_owned()
                ),
                ("airf:restore:case".to_owned(), "IR-1".to_owned()),
            ])
        );
        assert_eq!(RestoreRecord::from_tags(&tags), Ok(Some(r)));
        assert_eq!(RestoreRecord::from_tags(&BTreeMap::new()), Ok(None));
    }

    #[test]
    fn an_interface_with_sixteen_groups_spills_into_numbered_tags() {
        // 16 groups of 20 characters do not fit one 256-character value.
        let groups: Vec<String> = (0..16).map(|i| format!("sg-{i:017x}")).collect();
        let mut r = record();
        r.groups = BTreeMap::from([("eni-0123456789abcdef0".into(), groups.clone())]);
        let tags = r.to_tags();
        assert!(tags.values().all(|v| v.len() <= 256));
        assert!(tags.contains_key("airf:restore:sg:eni-0123456789abcdef0:2"));
        let back = RestoreRecord::from_tags(&tags).unwrap().unwrap();
        assert_eq!(back.groups["eni-0123456789abcdef0"], groups);
    }

    #[test]
    fn an_edited_tag_is_refused_by_name() {
        for (key, value) in [
            ("airf:restore:sg:eni-1", "sg-a; rm -rf"),
            ("airf:restore:sg:eni-1", ""),
            ("airf:restore:tg:1", "arn:aws:s3:::bucket 80"),
            (
                "airf:restore:tg:1",
                "arn:aws:elasticloadbalancing:x:1:targetgroup/a/b 99999",
            ),
            ("airf:restore:protection", "termination=yes stop=false"),
            ("airf:restore:profile", "WebServer"),
        ] {
            let mut tags = record().to_tags();
            tags.insert(key.into(), value.into());
            let read = RestoreRecord::from_tags(&tags);
            assert!(
                matches!(&read, Err(m) if m.contains(key)),
                "{key}={value} → {read:?}"
            );
        }
        let mut tags = record().to_tags();
        tags.remove("airf:restore:protection");
        assert!(RestoreRecord::from_tags(&tags).is_err());
    }

    fn arb_record() -> impl Strategy<Value = RestoreRecord> {
        (
            prop::collection::btree_map(
                "eni-[0-9a-f]{8,17}",
                prop::collection::vec("sg-[0-9a-f]{8,17}", 1..17),
                1..4,
            ),
            prop::option::of("[A-Za-z0-9_.-]{1,60}"),
            prop::collection::vec(
                (
                    "arn:aws:elasticloadbalancing:eu-west-1:[0-9]{12}:targetgroup/[a-z0-9-]{1,32}/[0-9a-f]{16}",
                    prop::option::of(1..=65535i32),
                ),
                0..5,
            ),
            any::<(bool, bool)>(),
            prop::option::of(prop::option::of(
                "arn:aws:iam::[0-9]{12}:instance-profile/[A-Za-z0-9+=,.@_/-]{1,60}",
            )),
        )
            .prop_map(|(groups, asg, tgs, (termination, stop), profile)| RestoreRecord {
                case_id: "IR-1".into(),
                groups,
                auto_scaling_group: asg,
                target_groups: tgs
                    .into_iter()
                    .map(|(arn, port)| TargetRegistration {
                        target_group_arn: arn,
                        port,
                    })
                    .collect(),
                protection: Protection { termination, stop },
                profile,
            })
    }

    proptest! {
        #[test]
        fn every_record_fits_ec2_tag_limits_and_reads_back(r in arb_record()) {
            let tags = r.to_tags();
            for (k, v) in &tags {
                prop_assert!(k.len() <= 128 && v.len() <= MAX_VALUE, "{k}={v}");
                prop_assert!(k.starts_with("airf:"), "{k}");
            }
            prop_assert_eq!(RestoreRecord::from_tags(&tags), Ok(Some(r)));
        }

        #[test]
        fn any_tag_map_reads_or_is_refused_without_panicking(
            tags in prop::collection::btree_map(
                prop_oneof![
                    Just("airf:restore:case".to_owned()),
                    "airf:restore:(sg|tg|asg|protection|profile)(:[a-z0-9:-]{0,20})?",
                    "[a-z:]{0,20}",
                ],
                "[ -~]{0,80}",
                0..12,
            )
        ) {
            if let Ok(Some(r)) = RestoreRecord::from_tags(&tags) {
                prop_assert!(!r.groups.is_empty());
                for g in r.groups.values().flatten() { prop_assert!(g.starts_with("sg-")); }
            }
        }
    }
}
