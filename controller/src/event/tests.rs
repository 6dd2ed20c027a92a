use super::*;
use proptest::prelude::*;
use serde_json::json;

mod rules;

const INSTANCE: &str = "i-0123456789abcdef0";
const ARN: &str = "arn:aws:ec2:eu-west-1:111111111111:instance/i-0123456789abcdef0";

fn tag_event(value: Option<&str>) -> Value {
    let mut tags = serde_json::Map::new();
    if let Some(v) = value {
        tags.insert(STATUS_TAG.into(), json!(v));
    }
    tags.insert("Name".into(), json!("web-1"));
    json!({
        "version": "0", "id": "6e0a8f1c-0000-0000-0000-000000000000",
        "detail-type": "Tag Change on Resource", "source": "aws.tag",
        "account": "111111111111", "time": "2026-11-29T17:21:34Z", "region": "eu-west-1",
        "resources": [ARN],
        "detail": {"changed-tag-keys": [STATUS_TAG], "service": "ec2", "resource-type": "instance",
                   "version": 3, "tags": tags}
    })
}

/// A Security Hub custom action for `resources` in account 111111111111.
fn hub_event(resources: Value) -> Value {
    hub_event_of("111111111111", resources)
}

/// A Security Hub custom action whose finding is in `account`.
fn hub_event_of(account: &str, resources: Value) -> Value {
    json!({
        "version": "0", "id": "1", "detail-type": "Security Hub Findings - Custom Action",
        "source": "aws.securityhub", "account": "222222222222", "time": "2026-11-29T17:21:34Z",
        "region": "eu-west-1",
        "resources": ["arn:aws:securityhub:eu-west-1:222222222222:action/custom/AirfIsolateAcquire"],
        "detail": {"actionName": "Isolate and acquire", "actionDescription": "airf",
                   "findings": [{"AwsAccountId": account, "Region": "eu-west-1", "Resources": resources}]}
    })
}

fn rejected(v: Value) -> String {
    match parse(v) {
        Err(Rejected(why)) => why,
        other => format!("NOT REJECTED: {other:?}"),
    }
}

#[test]
fn analyze_and_contain_tags_are_triggers() {
    let parsed = parse(tag_event(Some("Analyze")));
    let Ok(Request::Trigger(t)) = parsed else {
        panic!("Analyze is a trigger: {parsed:?}");
    };
    assert_eq!(t.intent, Intent::Investigate);
    assert_eq!(t.tag_value, Some(Status::Analyze));
    assert_eq!(
        t.targets,
        vec![Target {
            instance_id: INSTANCE.into(),
            account: "111111111111".into(),
            region: "eu-west-1".into()
        }]
    );
    let parsed = parse(tag_event(Some("Contain")));
    let Ok(Request::Trigger(t)) = parsed else {
        panic!("Contain is a trigger: {parsed:?}");
    };
    assert_eq!(t.intent, Intent::Contain);
}

#[test]
fn the_release_tag_is_a_trigger_and_the_controllers_released_echo_is_not() {
    let parsed = parse(tag_event(Some("Release")));
    let Ok(Request::Trigger(t)) = parsed else {
        panic!("Release is a trigger: {parsed:?}");
    };
    assert_eq!(t.intent, Intent::Release);
    assert_eq!(t.tag_value, Some(Status::Release));
    // `release` writes Released; its tag-change event must start nothing.
    for v in ["Released", "release"] {
        assert!(
            matches!(parse(tag_event(Some(v))), Ok(Request::Ignored(_))),
            "{v}"
        );
    }
}

#[test]
fn other_status_values_and_removed_tags_are_ignored_not_errors() {
    for v in [Some("InProgress"), Some("Error"), Some("analyze"), None] {
        assert!(
            matches!(parse(tag_event(v)), Ok(Request::Ignored(_))),
            "{v:?}"
        );
    }
    let mut e = tag_event(Some("Analyze"));
    e["detail"]["changed-tag-keys"] = json!(["Name"]);
    assert!(matches!(parse(e), Ok(Request::Ignored(_))));
}

#[test]
fn hostile_tag_events_are_rejected() {
    let mut e = tag_event(Some("Analyze"));
    e["detail"]["resource-type"] = json!("volume");
    assert!(rejected(e).contains("ec2/instance only"));
    let mut e = tag_event(Some("Analyze"));
    e["account"] = json!("999999999999");
    assert!(rejected(e).contains("not in the event's account"));
    let mut e = tag_event(Some("Analyze"));
    e["resources"] = json!([ARN, ARN]);
    assert!(rejected(e).contains("exactly one"));
    let mut e = tag_event(Some("Analyze"));
    e["resources"] = json!(["arn:aws:ec2:eu-west-1:111111111111:volume/vol-1"]);
    assert!(rejected(e).contains("not an EC2 instance ARN"));
    let mut e = tag_event(Some("Analyze"));
    e["resources"] = json!(["arn:aws:ec2:eu-west-1:111111111111:instance/i-0123;rm -rf /"]);
    assert!(rejected(e).contains("not an EC2 instance id"));
    let mut e = tag_event(Some("Analyze"));
    e["source"] = json!("aws.ec2");
    assert!(rejected(e).contains("not one the controller handles"));
    let mut e = tag_event(Some("Analyze"));
    e["detail"]["padding"] = json!("x".repeat(MAX_EVENT_BYTES));
    assert!(rejected(e).contains("at most"));
}

#[test]
fn security_hub_actions_collect_instances() {
    let e = hub_event(json!([
        {"Type": "AwsEc2Instance", "Id": ARN},
        {"Type": "AwsEc2Instance", "Id": ARN},
        {"Type": "AwsS3Bucket", "Id": "arn:aws:s3:::b"},
        {"Type": "AwsEc2Instance", "Id": "arn:aws:ec2:eu-west-1:111111111111:instance/i-0123456789abcdef1"}
    ]));
    let parsed = parse(e);
    let Ok(Request::Trigger(t)) = parsed else {
        panic!("a custom action with instances is a trigger: {parsed:?}");
    };
    assert_eq!(t.source, TriggerSource::SecurityHub);
    assert_eq!(
        t.targets.len(),
        2,
        "deduplicated, other resource types left out"
    );
}

#[test]
fn hostile_security_hub_actions_are_rejected() {
    assert!(
        rejected(hub_event(
            json!([{"Type": "AwsS3Bucket", "Id": "arn:aws:s3:::b"}])
        ))
        .contains("no AwsEc2Instance")
    );
    let other = "arn:aws:ec2:eu-west-1:333333333333:instance/i-0123456789abcdef0";
    assert!(
        rejected(hub_event(json!([{"Type": "AwsEc2Instance", "Id": other}])))
            .contains("of account 333333333333")
    );
    let many: Vec<Value> = (0..=MAX_TARGETS)
        .map(|n| json!({"Type": "AwsEc2Instance", "Id": format!("arn:aws:ec2:eu-west-1:111111111111:instance/i-{n:017x}")}))
        .collect();
    assert!(rejected(hub_event(Value::Array(many))).contains("at most"));
}

#[test]
fn tasks_are_checked() {
    let claim = json!({"action": "claim", "case_id": "IR-1", "intent": "investigate",
                       "subject": {"instance_id": INSTANCE, "account": "111111111111", "region": "eu-west-1", "claim": 1}});
    assert!(matches!(
        parse(claim.clone()),
        Ok(Request::Task(Task::Claim { .. }))
    ));
    let mut bad = claim.clone();
    bad["case_id"] = json!("../../etc");
    assert!(rejected(bad).contains("case id"));
    let mut bad = claim.clone();
    bad["subject"]["account"] = json!("1");
    assert!(rejected(bad).contains("account id"));
    let mut bad = claim;
    bad["action"] = json!("terminate");
    assert!(rejected(bad).contains("workflow task"));
    assert!(
        rejected(json!({"CaseId": "x", "InstanceId": INSTANCE}))
            .contains("start the Step Functions workflow")
    );
    assert!(rejected(json!([1, 2])).contains("not a JSON object"));
    assert!(rejected(json!({"hello": "world"})).contains("unknown input"));
}

#[test]
fn caught_lambda_errors_yield_their_message() {
    let e = CaughtError {
        error: "Airf.Failed".into(),
        cause: r#"{"errorType":"Airf.Failed","errorMessage":"boom"}"#.into(),
    };
    assert_eq!(e.message(), "boom");
    let e = CaughtError {
        error: "States.Timeout".into(),
        cause: "timed out".into(),
    };
    assert_eq!(e.message(), "timed out");
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "[ -~]{0,20}".prop_map(Value::String),
        Just(json!("Analyze")),
        Just(json!(ARN)),
        Just(json!("aws.tag")),
        Just(json!("Tag Change on Resource")),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("action".to_owned()),
                    Just("detail-type".to_owned()),
                    Just("source".to_owned()),
                    Just("detail".to_owned()),
                    Just("resources".to_owned()),
                    Just("findings".to_owned()),
                    Just("Resources".to_owned()),
                    "[a-z-]{1,12}"
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_bytes(&bytes);
    }

    #[test]
    fn arbitrary_json_is_rejected_or_yields_valid_targets(v in json_value()) {
        match parse(v) {
            Ok(Request::Trigger(t)) => {
                prop_assert!(!t.targets.is_empty() && t.targets.len() <= MAX_TARGETS);
                for target in &t.targets { prop_assert!(target.validate().is_ok()); }
            }
            Ok(Request::Task(task)) => prop_assert!(check_task(&task).is_ok()),
            Ok(Request::Ignored(_)) | Err(_) => {}
        }
    }

    #[test]
    fn mutated_tag_events_never_yield_an_unvalidated_target(account in "[0-9a-z]{0,14}", region in "[a-z0-9-]{0,12}", id in "[a-z0-9-]{0,22}") {
        let mut e = tag_event(Some("Analyze"));
        e["resources"] = json!([format!("arn:aws:ec2:{region}:{account}:instance/{id}")]);
        e["account"] = json!(account);
        e["region"] = json!(region);
        if let Ok(Request::Trigger(t)) = parse(e) {
            for target in &t.targets { prop_assert!(target.validate().is_ok()); }
        }
    }
}
