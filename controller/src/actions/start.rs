//! `start`: an incident trigger becomes one workflow execution for the instances it may claim.
//!
//! Duplicates start nothing: an instance already `InProgress` (or contained by the controller) is
//! skipped, and the execution name is derived from the instances, their investigation counters
//! and the triggering event's id, so a redelivered event (EventBridge delivers at least once)
//! computes the same name and Step Functions starts nothing new: StartExecution returns the
//! running execution for the same name and input, and refuses a finished one's name with
//! `ExecutionAlreadyExists` for 90 days. The event id matters because the counter only moves at
//! `claim`: a run that ended before it (rejected input, a failed first step, a stopped execution)
//! would otherwise leave its name to the next trigger, which Step Functions would then refuse.
//! Two different triggers racing for one instance get two executions; `claim` lets one win.

use crate::cloud::{Cloud, Started};
use crate::config::Config;
use crate::error::Result;
use crate::event::Trigger;
use crate::model::{
    CASE_TAG, CONTAINED_TAG, InstanceFacts, InstanceState, Intent, Status, Subject, Target,
    WorkflowInput,
};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// What `start` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StartReport {
    /// The execution started (or found, for a duplicate of the same event).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_arn: Option<String>,
    /// Its case.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub case_id: Option<String>,
    /// Instances in it.
    pub started: Vec<Target>,
    /// Instances left alone, and why.
    pub skipped: Vec<Skipped>,
}

/// An instance `start` left alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// `i-…`.
    pub instance_id: String,
    /// Why.
    pub reason: String,
}

/// Whether an instance may be claimed by this trigger: Ok(next investigation number), or why not.
pub fn decide(facts: Option<&InstanceFacts>, trigger: &Trigger) -> Result<u32, String> {
    let Some(facts) = facts else {
        return Err("no such instance (terminated, or the member role cannot see it)".into());
    };
    if facts.state == InstanceState::Gone {
        return Err("the instance is shutting down or terminated".into());
    }
    let status = facts.status();
    let case = facts.tag(CASE_TAG).unwrap_or("");
    if status == Some(Status::InProgress) {
        return Err(format!("already under investigation (case {case})"));
    }
    if let Some(wanted) = trigger.tag_value
        && status != Some(wanted)
    {
        return Err(format!(
            "the event asked for {} but the tag is now {:?}: a stale or duplicate event",
            wanted.as_str(),
            status.map(Status::as_str)
        ));
    }
    let contained_by = facts.tag(CONTAINED_TAG);
    if status == Some(Status::Contain)
        && contained_by.is_some()
        && contained_by == facts.tag(CASE_TAG)
    {
        return Err(format!("already contained by case {case}"));
    }
    if trigger.intent == Intent::Investigate && facts.state == InstanceState::Stopped {
        return Err("the instance is stopped: there is no memory to take and SSM cannot run; tag it Contain \
                    to isolate it and snapshot its volumes"
            .into());
    }
    Ok(facts.investigations().saturating_add(1))
}

/// Case id: `IR-<UTC event time>-<first instance>[-<count>]`: the same for a redelivered event.
pub fn case_id(trigger: &Trigger, subjects: &[Subject]) -> String {
    let stamp: String = trigger
        .time
        .as_deref()
        .unwrap_or("")
        .chars()
        .filter(char::is_ascii_digit)
        .take(14)
        .collect();
    let first = subjects
        .first()
        .map(|s| s.target.instance_id.as_str())
        .unwrap_or("none");
    let mut id = format!("IR-{stamp}-{first}");
    if subjects.len() > 1 {
        id.push_str(&format!("-x{}", subjects.len()));
    }
    id
}

/// Execution name: `airf-<instance>-<n>-<event>` for one instance, `airf-fleet-<hash>` for many,
/// where `<event>` is a hash of the triggering event's id (its time when it has none). At most
/// 80 characters of `[A-Za-z0-9_-]`, as Step Functions requires.
pub fn execution_name(subjects: &[Subject], trigger: &Trigger) -> String {
    let event = trigger
        .event_id
        .as_deref()
        .or(trigger.time.as_deref())
        .unwrap_or("");
    match subjects {
        [one] => {
            let digest = Sha256::digest(event.as_bytes());
            format!(
                "airf-{}-{}-{}",
                one.target.instance_id,
                one.claim,
                hex::encode(digest.get(..8).unwrap_or_default())
            )
        }
        many => {
            let mut keys: Vec<String> = many
                .iter()
                .map(|s| {
                    format!(
                        "{}:{}:{}:{}",
                        s.target.account, s.target.region, s.target.instance_id, s.claim
                    )
                })
                .collect();
            keys.sort();
            let digest = Sha256::digest(format!("{}|{event}", keys.join(",")).as_bytes());
            format!(
                "airf-fleet-{}",
                hex::encode(digest.get(..12).unwrap_or_default())
            )
        }
    }
}

/// Starts the workflow for the instances of `trigger` that may be claimed.
pub async fn start<C: Cloud>(cloud: &C, config: &Config, trigger: &Trigger) -> Result<StartReport> {
    let mut subjects = Vec::new();
    let mut skipped = Vec::new();
    for target in &trigger.targets {
        let facts = cloud.describe_instance(target).await?;
        match decide(facts.as_ref(), trigger) {
            Ok(claim) => subjects.push(Subject {
                target: target.clone(),
                claim,
            }),
            Err(reason) => skipped.push(Skipped {
                instance_id: target.instance_id.clone(),
                reason,
            }),
        }
    }
    let mut report = StartReport {
        execution_arn: None,
        case_id: None,
        started: Vec::new(),
        skipped,
    };
    if subjects.is_empty() {
        return Ok(report);
    }
    let case_id = case_id(trigger, &subjects);
    let input = WorkflowInput {
        case_id: case_id.clone(),
        intent: trigger.intent,
        trigger: trigger.source.as_str().to_owned(),
        instances: subjects.clone(),
        retain_artefacts: true,
    };
    let input_json = serde_json::to_string(&input)
        .map_err(|e| crate::error::Error::failed(format!("workflow input: {e}")))?;
    match cloud
        .start_execution(
            &config.state_machine_arn,
            &execution_name(&subjects, trigger),
            &input_json,
        )
        .await?
    {
        Started::Execution(arn) => {
            report.execution_arn = Some(arn);
            report.case_id = Some(case_id);
            report.started = subjects.into_iter().map(|s| s.target).collect();
        }
        Started::AlreadyExists => {
            report.skipped.extend(subjects.into_iter().map(|s| Skipped {
                instance_id: s.target.instance_id,
                reason: "this event was handled before (EventBridge redelivers events): its execution \
                         exists"
                    .into(),
            }));
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::TriggerSource;
    use crate::fake::facts;

    fn trigger(intent: Intent, tag: Option<Status>) -> Trigger {
        Trigger {
            source: TriggerSource::Tag,
            intent,
            tag_value: tag,
            targets: vec![],
            time: Some("2026-11-29T17:21:34Z".into()),
            event_id: Some("4b5c1a2e-0f1d-4e8a-9a37-1d2f3e4a5b6c".into()),
        }
    }

    /// The SSM documents' CaseId allowedPattern, as generated (ssm-documents/src/documents.yaml):
    /// the agent's safe case-id set, which it enforces itself (exit 2 on anything else).
    fn document_case_pattern() -> regex::Regex {
        let docs = concat!(env!("CARGO_MANIFEST_DIR"), "/../ssm-documents");
        let mut patterns = std::collections::BTreeSet::new();
        for doc in [
            "airf-acquire-memory",
            "airf-acquire-disk",
            "airf-acquire-all",
        ] {
            let text = std::fs::read_to_string(format!("{docs}/{doc}.json")).unwrap();
            let json: serde_json::Value = serde_json::from_str(&text).unwrap();
            patterns.insert(
                json["parameters"]["CaseId"]["allowedPattern"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        assert_eq!(patterns.len(), 1, "the documents disagree: {patterns:?}");
        let pattern = patterns.pop_first().unwrap();
        assert_eq!(pattern, "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$");
        regex::Regex::new(&pattern).unwrap()
    }

    proptest::proptest! {
        /// Every case id the controller makes, for any fleet and event time, is one the SSM
        /// documents (and so the agent) accept as it is: evidence is filed under the id the
        /// controller records.
        #[test]
        fn generated_case_ids_pass_the_documents_pattern(
            ids in proptest::collection::vec("i-[0-9a-f]{8}|i-[0-9a-f]{17}", 1..600),
            time in proptest::option::of("[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})"),
        ) {
            let mut t = trigger(Intent::Investigate, Some(Status::Analyze));
            t.time = time;
            let subjects: Vec<Subject> = ids
                .iter()
                .map(|id| Subject { target: facts(id).target, claim: 1 })
                .collect();
            let id = case_id(&t, &subjects);
            proptest::prop_assert!(document_case_pattern().is_match(&id), "{}", id);
            proptest::prop_assert!(crate::model::is_case_id(&id), "{}", id);
        }

        /// The controller's own rule for case ids it is given is no wider than the documents'.
        #[test]
        fn accepted_case_ids_pass_the_documents_pattern(s in "[ -~]{0,140}") {
            if crate::model::is_case_id(&s) {
                proptest::prop_assert!(document_case_pattern().is_match(&s), "{}", s);
            }
        }
    }

    #[test]
    fn a_fresh_instance_is_claimed_with_the_next_number() {
        let mut f = facts("i-0123456789abcdef0");
        f.tags
            .insert("SecurityIncidentStatus".into(), "Analyze".into());
        assert_eq!(
            decide(
                Some(&f),
                &trigger(Intent::Investigate, Some(Status::Analyze))
            ),
            Ok(1)
        );
        f.tags.insert("airf:investigations".into(), "4".into());
        assert_eq!(
            decide(
                Some(&f),
                &trigger(Intent::Investigate, Some(Status::Analyze))
            ),
            Ok(5)
        );
    }

    #[test]
    fn duplicates_and_echoes_are_skipped() {
        let mut f = facts("i-0123456789abcdef0");
        f.tags
            .insert("SecurityIncidentStatus".into(), "InProgress".into());
        let why = decide(
            Some(&f),
            &trigger(Intent::Investigate, Some(Status::Analyze)),
        )
        .unwrap_err();
        assert!(why.contains("already under investigation"), "{why}");
        // The controller's own Contain tag comes back as an event: no second containment.
        f.tags
            .insert("SecurityIncidentStatus".into(), "Contain".into());
        f.tags.insert("airf:case".into(), "IR-1".into());
        f.tags.insert("airf:contained".into(), "IR-1".into());
        let why = decide(Some(&f), &trigger(Intent::Contain, Some(Status::Contain))).unwrap_err();
        assert!(why.contains("already contained"), "{why}");
        // A responder's Contain on an instance the controller never contained is work.
        f.tags.remove("airf:contained");
        assert_eq!(
            decide(Some(&f), &trigger(Intent::Contain, Some(Status::Contain))),
            Ok(1)
        );
    }

    #[test]
    fn stale_events_gone_and_stopped_instances_are_skipped() {
        let mut f = facts("i-0123456789abcdef0");
        f.tags
            .insert("SecurityIncidentStatus".into(), "Error".into());
        assert!(
            decide(
                Some(&f),
                &trigger(Intent::Investigate, Some(Status::Analyze))
            )
            .is_err()
        );
        assert!(decide(None, &trigger(Intent::Investigate, None)).is_err());
        f.state = InstanceState::Stopped;
        let why = decide(Some(&f), &trigger(Intent::Investigate, None)).unwrap_err();
        assert!(why.contains("stopped"), "{why}");
        assert_eq!(decide(Some(&f), &trigger(Intent::Contain, None)), Ok(1));
        f.state = InstanceState::Gone;
        assert!(decide(Some(&f), &trigger(Intent::Contain, None)).is_err());
    }

    /// A run that ended before `claim` leaves the counter where it was: the next trigger still
    /// starts a new execution, while a redelivery of the first event starts nothing.
    #[tokio::test]
    async fn a_new_trigger_after_a_run_that_never_claimed_starts_a_new_execution() {
        let cloud = crate::fake::FakeCloud::with(facts("i-0123456789abcdef0"));
        let config = crate::config::test_config();
        let mut first = trigger(Intent::Contain, None);
        first.targets = vec![facts("i-0123456789abcdef0").target];
        let started = start(&cloud, &config, &first).await.unwrap();
        let name = started
            .execution_arn
            .clone()
            .and_then(|a| a.strip_prefix("arn:execution:").map(str::to_owned))
            .unwrap();
        // It ends before claim (e.g. stopped by hand).
        cloud.lock().finished.push(name);
        let again = start(&cloud, &config, &first).await.unwrap();
        assert!(again.execution_arn.is_none(), "{again:?}");
        assert!(
            again.skipped[0].reason.contains("handled before"),
            "{again:?}"
        );
        let mut next = first.clone();
        next.event_id = Some("a later event".into());
        next.time = Some("2026-11-29T18:30:00Z".into());
        let later = start(&cloud, &config, &next).await.unwrap();
        assert!(later.execution_arn.is_some(), "{later:?}");
        assert_eq!(cloud.lock().executions.len(), 2);
    }

    #[test]
    fn names_and_case_ids_are_deterministic_and_valid() {
        let sub = |id: &str, n| Subject {
            target: Target {
                instance_id: id.into(),
                account: "111111111111".into(),
                region: "eu-west-1".into(),
            },
            claim: n,
        };
        let t = trigger(Intent::Investigate, None);
        let one = [sub("i-0123456789abcdef0", 2)];
        let name = execution_name(&one, &t);
        assert!(name.starts_with("airf-i-0123456789abcdef0-2-"), "{name}");
        assert_eq!(name, execution_name(&one, &t.clone()), "a redelivery");
        let mut next = t.clone();
        next.event_id = Some("another event".into());
        assert_ne!(
            name,
            execution_name(&one, &next),
            "a new trigger after a run that never claimed"
        );
        assert_eq!(case_id(&t, &one), "IR-20261129172134-i-0123456789abcdef0");
        let a = [sub("i-0123456789abcdef0", 1), sub("i-0123456789abcdef1", 1)];
        let b = [sub("i-0123456789abcdef1", 1), sub("i-0123456789abcdef0", 1)];
        assert_eq!(execution_name(&a, &t), execution_name(&b, &t));
        assert_ne!(execution_name(&a, &t), execution_name(&a, &next));
        assert_ne!(
            execution_name(&a, &t),
            execution_name(
                &[sub("i-0123456789abcdef0", 2), sub("i-0123456789abcdef1", 1)],
                &t
            )
        );
        let longest = [sub("i-0123456789abcdef0", u32::MAX)];
        for name in [
            execution_name(&a, &t),
            execution_name(&one, &t),
            execution_name(&longest, &t),
        ] {
            assert!(
                name.len() <= 80 && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-'),
                "{name}"
            );
        }
        assert!(crate::model::is_case_id(&case_id(&t, &a)));
    }
}
