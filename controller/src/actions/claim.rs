//! `normalize` and `claim`: the workflow's first steps. `normalize` accepts airf's input or the
//! console input of the framework airf replaces, awslabs' "AWS Automated Incident Response and
//! Forensics" (github.com/awslabs/aws-automated-incident-response-and-forensics; "the awslabs
//! AIRF framework" elsewhere in this crate), so its runbooks keep working; `claim` tags the
//! instance `InProgress` for this case, unless another case holds it.

use crate::cloud::Cloud;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::event::MAX_TARGETS;
use crate::model::{
    CASE_TAG, INVESTIGATIONS_TAG, InstanceFacts, InstanceState, Intent, STATUS_TAG, Status,
    Subject, Target, WorkflowInput, is_case_id,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// The awslabs AIRF framework's console input.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsoleInput {
    #[serde(rename = "CaseId")]
    case_id: String,
    #[serde(rename = "InstanceId")]
    instance_id: String,
    #[serde(rename = "Account")]
    account: String,
    #[serde(rename = "Region")]
    region: String,
    #[serde(rename = "RetainArtefacts", default)]
    retain_artefacts: Option<Value>,
}

fn flag(value: Option<&Value>) -> Result<bool> {
    match value {
        None => Ok(true),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(false),
        Some(other) => Err(Error::bad_input(format!(
            "RetainArtefacts {other}: use true or false"
        ))),
    }
}

fn check(input: &WorkflowInput) -> Result<()> {
    if !is_case_id(&input.case_id) {
        return Err(Error::bad_input(format!(
            "case id {:?}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
            input.case_id
        )));
    }
    if input.instances.is_empty() || input.instances.len() > MAX_TARGETS {
        return Err(Error::bad_input(format!(
            "{} instances: give 1 to {MAX_TARGETS}",
            input.instances.len()
        )));
    }
    for s in &input.instances {
        s.target.validate().map_err(Error::bad_input)?;
    }
    Ok(())
}

/// Turns the execution input into airf's [`WorkflowInput`]. Every account it names is checked
/// against the deployment's members before any call is made in it: the console input needs a
/// DescribeInstances in the member account (through its role) to number the investigation.
pub async fn normalize<C: Cloud>(
    cloud: &C,
    config: &Config,
    input: Value,
) -> Result<WorkflowInput> {
    if input.get("instances").is_some() {
        let parsed: WorkflowInput = serde_json::from_value(input)
            .map_err(|e| Error::bad_input(format!("workflow input: {e}")))?;
        check(&parsed)?;
        for s in &parsed.instances {
            config.check_account(&s.target.account)?;
        }
        return Ok(parsed);
    }
    let console: ConsoleInput = serde_json::from_value(input).map_err(|e| {
        Error::bad_input(format!(
            "workflow input: {e}; expected {{\"CaseId\", \"InstanceId\", \"Account\", \"Region\", \"RetainArtefacts\"}} \
             or airf's {{\"case_id\", \"intent\", \"instances\": [...]}}"
        ))
    })?;
    let target = Target {
        instance_id: console.instance_id,
        account: console.account,
        region: console.region,
    };
    target.validate().map_err(Error::bad_input)?;
    config.check_account(&target.account)?;
    let facts = super::instance(cloud, &target).await?;
    let input = WorkflowInput {
        case_id: console.case_id,
        intent: Intent::Investigate,
        trigger: "console".into(),
        instances: vec![Subject {
            target,
            claim: facts.investigations().saturating_add(1),
        }],
        retain_artefacts: flag(console.retain_artefacts.as_ref())?,
    };
    check(&input)?;
    Ok(input)
}

/// What `claim` decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimOutcome {
    /// Whether this case now holds the instance; false: the workflow skips it.
    pub claimed: bool,
    /// Why not, when not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Whether `case_id` may claim the instance.
pub fn decide(facts: &InstanceFacts, case_id: &str, subject: &Subject) -> Result<bool, String> {
    if facts.state == InstanceState::Gone {
        return Err("the instance is shutting down or terminated".into());
    }
    let holder = facts.tag(CASE_TAG);
    if holder == Some(case_id) && facts.status() == Some(Status::InProgress) {
        return Ok(false); // already ours: a retried claim changes nothing
    }
    if facts.status() == Some(Status::InProgress) {
        return Err(format!("case {} holds it", holder.unwrap_or("(unknown)")));
    }
    if facts.investigations() >= subject.claim && holder != Some(case_id) {
        return Err(format!(
            "investigation {} (case {}) claimed it after this one was started",
            facts.investigations(),
            holder.unwrap_or("(unknown)")
        ));
    }
    Ok(true)
}

/// Tags the instance for this case.
pub async fn claim<C: Cloud>(cloud: &C, case_id: &str, subject: &Subject) -> Result<ClaimOutcome> {
    let facts = super::instance(cloud, &subject.target).await?;
    match decide(&facts, case_id, subject) {
        Ok(needs_tags) => {
            if needs_tags {
                let tags = BTreeMap::from([
                    (
                        STATUS_TAG.to_owned(),
                        Status::InProgress.as_str().to_owned(),
                    ),
                    (CASE_TAG.to_owned(), case_id.to_owned()),
                    (INVESTIGATIONS_TAG.to_owned(), subject.claim.to_string()),
                ]);
                cloud.tag_instance(&subject.target, &tags).await?;
            }
            Ok(ClaimOutcome {
                claimed: true,
                reason: None,
            })
        }
        Err(reason) => Ok(ClaimOutcome {
            claimed: false,
            reason: Some(reason),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{FakeCloud, facts};
    use serde_json::json;

    fn subject(claim: u32) -> Subject {
        Subject {
            target: facts("i-0123456789abcdef0").target,
            claim,
        }
    }

    #[test]
    fn claims_respect_other_cases() {
        let mut f = facts("i-0123456789abcdef0");
        assert_eq!(decide(&f, "IR-1", &subject(1)), Ok(true));
        f.tags
            .insert("SecurityIncidentStatus".into(), "InProgress".into());
        f.tags.insert("airf:case".into(), "IR-1".into());
        f.tags.insert("airf:investigations".into(), "1".into());
        assert_eq!(decide(&f, "IR-1", &subject(1)), Ok(false));
        assert!(decide(&f, "IR-2", &subject(1)).is_err());
        f.tags
            .insert("SecurityIncidentStatus".into(), "Contain".into());
        assert!(
            decide(&f, "IR-2", &subject(1)).is_err(),
            "a later claim won"
        );
        assert_eq!(decide(&f, "IR-2", &subject(2)), Ok(true));
    }

    #[tokio::test]
    async fn console_input_of_the_awslabs_airf_framework_is_accepted() {
        let cloud = FakeCloud::with(facts("i-0123456789abcdef0"));
        let config = crate::config::test_config();
        let input = json!({"CaseId": "IR-42", "InstanceId": "i-0123456789abcdef0", "Account": "111111111111",
                           "Region": "eu-west-1", "RetainArtefacts": "false"});
        let n = normalize(&cloud, &config, input).await;
        let n = n.map_err(|e| e.to_string());
        assert!(
            matches!(&n, Ok(w) if w.case_id == "IR-42" && !w.retain_artefacts && w.trigger == "console"
            && w.instances.first().map(|s| s.claim) == Some(1)),
            "{n:?}"
        );
        let bad = normalize(
            &cloud,
            &config,
            json!({"CaseId": "../x", "InstanceId": "i-0123456789abcdef0",
            "Account": "111111111111", "Region": "eu-west-1"}),
        )
        .await;
        assert!(matches!(bad, Err(Error::BadInput(_))));
        let unknown = normalize(
            &cloud,
            &config,
            json!({"CaseId": "a", "InstanceId": "i-0123456789abcdef0",
            "Account": "111111111111", "Region": "eu-west-1", "Extra": 1}),
        )
        .await;
        assert!(matches!(unknown, Err(Error::BadInput(_))));
    }
}
