//! One property per rule of the parser: inputs that are valid in every way but one are rejected,
//! with a message that names the rule they break. Each test starts from a generator of valid
//! inputs (checked to be accepted by `valid_inputs_are_accepted`) and applies one mutation.

use super::super::*;
use proptest::prelude::*;
use serde_json::json;

// ------------------------------------------------------------------ valid inputs

fn instance_id() -> impl Strategy<Value = String> {
    prop_oneof!["i-[0-9a-f]{8}", "i-[0-9a-f]{17}"]
}

fn account() -> impl Strategy<Value = String> {
    "[0-9]{12}"
}

fn region() -> impl Strategy<Value = String> {
    prop_oneof![
        "(af|ap|ca|cn|eu|il|me|mx|sa|us)-(central|east|north|northeast|south|southeast|west)-[1-9]",
        "us-gov-(east|west)-1",
    ]
}

fn target() -> impl Strategy<Value = Target> {
    (instance_id(), account(), region()).prop_map(|(instance_id, account, region)| Target {
        instance_id,
        account,
        region,
    })
}

fn case_id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
}

fn arn(t: &Target) -> String {
    t.instance_arn()
}

fn subject(t: &Target, claim: u32) -> Value {
    json!({"instance_id": t.instance_id, "account": t.account, "region": t.region, "claim": claim})
}

/// Every workflow task that names a case and an instance, as the workflow sends it.
fn task() -> impl Strategy<Value = Value> {
    let action = prop_oneof![
        Just("claim"),
        Just("prepare"),
        Just("managed"),
        Just("acquire"),
        Just("acquire_status"),
        Just("verify"),
        Just("contain"),
        Just("fail"),
        Just("isolation_plan"),
        Just("isolate"),
        Just("release"),
        Just("snapshot_plan"),
        Just("snapshot_results"),
    ];
    (action, case_id(), target(), 1..1000u32).prop_map(|(action, case_id, t, claim)| {
        let mut task = json!({"action": action, "case_id": case_id, "subject": subject(&t, claim)});
        let extra = match action {
            "claim" => Some(("intent", json!("investigate"))),
            "acquire" => Some(("kind", json!("memory"))),
            "acquire_status" => Some((
                "command",
                json!({"command_id": "c-1", "document": "airf-acquire-disk", "plugin": "AcquireDisks", "kind": "disk"}),
            )),
            "verify" => Some(("results", json!([]))),
            "snapshot_plan" => Some((
                "memory",
                json!({"kind": "memory", "not_acquired": "the instance is stopped"}),
            )),
            "fail" => Some((
                "error",
                json!({"Error": "Airf.Failed", "Cause": "x"}),
            )),
            _ => None,
        };
        if let Some((key, value)) = extra {
            task[key] = value;
        }
        if action == "verify" {
            task["execution_arn"] = json!(EXECUTION);
        }
        if action == "snapshot_results" {
            task["plan"] = json!({"tasks": []});
            task["tasks"] = json!([]);
        }
        task
    })
}

/// A child execution of the Distributed Map, as `$$.Execution.Id` names it.
const EXECUTION: &str = "arn:aws:states:us-east-1:222222222222:execution:airf-investigation/Instance:0f3c2b1a-9e8d-4c7b-a6f5-e4d3c2b1a098";

fn tag_event_of(t: &Target, status: &str) -> Value {
    json!({
        "version": "0", "id": "6e0a8f1c-0000-0000-0000-000000000000",
        "detail-type": "Tag Change on Resource", "source": "aws.tag",
        "account": t.account, "time": "2026-11-29T17:21:34Z", "region": t.region,
        "resources": [arn(t)],
        "detail": {"changed-tag-keys": [STATUS_TAG], "service": "ec2", "resource-type": "instance",
                   "version": 3, "tags": {STATUS_TAG: status, "Name": "web-1"}}
    })
}

/// A `SecurityIncidentStatus` change to Analyze, Contain or Release on one instance.
fn tag_event() -> impl Strategy<Value = (Value, Target)> {
    (
        target(),
        prop_oneof![Just("Analyze"), Just("Contain"), Just("Release")],
    )
        .prop_map(|(t, status)| (tag_event_of(&t, status), t))
}

fn ec2_resource(t: &Target) -> Value {
    json!({"Type": "AwsEc2Instance", "Id": arn(t)})
}

/// A custom action on a finding naming 1 to 5 instances of its account (and a bucket).
fn hub_event() -> impl Strategy<Value = (Value, Vec<Target>)> {
    (
        account(),
        prop::collection::vec((instance_id(), region()), 1..=5),
    )
        .prop_map(|(account, places)| {
            let targets: Vec<Target> = places
                .into_iter()
                .map(|(instance_id, region)| Target {
                    instance_id,
                    account: account.clone(),
                    region,
                })
                .collect();
            let mut resources: Vec<Value> = targets.iter().map(ec2_resource).collect();
            resources.push(json!({"Type": "AwsS3Bucket", "Id": "arn:aws:s3:::b"}));
            (
                super::hub_event_of(&account, Value::Array(resources)),
                targets,
            )
        })
}

/// Any valid input: a task, a tag event or a Security Hub action.
fn valid_input() -> impl Strategy<Value = Value> {
    prop_oneof![
        task(),
        tag_event().prop_map(|(e, _)| e),
        hub_event().prop_map(|(e, _)| e),
    ]
}

// ------------------------------------------------------------------ one rule broken

fn invalid_case_id() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[._-][A-Za-z0-9._-]{0,20}",
        "[A-Za-z0-9]{1,10}[/ :;*?\"'\\\\<>|$`\n][A-Za-z0-9]{0,10}",
        "[A-Za-z0-9][A-Za-z0-9._-]{64,80}",
    ]
}

fn invalid_instance_id() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("i-".to_owned()),
        "i-[0-9a-f]{1,7}",
        "i-[0-9a-f]{9,16}",
        "i-[0-9a-f]{18,24}",
        "i-[0-9a-f]{0,8}[A-Zg-z;/ ][0-9a-f]{8}",
        "(vol|sg|eni|ami)-[0-9a-f]{17}",
    ]
}

fn invalid_account() -> impl Strategy<Value = String> {
    prop_oneof!["[0-9]{0,11}", "[0-9]{13,16}", "[0-9]{5}[a-z -][0-9]{6}",]
}

fn invalid_region() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-z]{2,10}",
        "-[a-z]{2}-[a-z]{4}-[1-9]",
        "[a-z]{2}-[a-z]{4}-[1-9]-",
        "[A-Z]{2}-[A-Z]{4}-[1-9]",
        "[a-z]{2}-[a-z]{4}[_ /.][1-9]",
        "[a-z]{2}-[a-z]{30,40}-[1-9]",
    ]
}

fn rejection(input: Value) -> String {
    match parse(input) {
        Err(Rejected(why)) => why,
        other => panic!("accepted: {other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn valid_inputs_are_accepted(input in valid_input()) {
        let parsed = parse(input.clone());
        prop_assert!(
            matches!(parsed, Ok(Request::Task(_) | Request::Trigger(_))),
            "{} → {:?}", input, parsed
        );
    }

    #[test]
    fn tag_events_and_actions_yield_exactly_their_instances(
        (tag, tag_target) in tag_event(),
        (hub, hub_targets) in hub_event(),
    ) {
        let Ok(Request::Trigger(t)) = parse(tag) else { panic!("tag event rejected") };
        prop_assert_eq!(t.targets, vec![tag_target]);
        let Ok(Request::Trigger(t)) = parse(hub) else { panic!("action rejected") };
        let mut expected: Vec<Target> = Vec::new();
        for target in hub_targets {
            if !expected.contains(&target) { expected.push(target); }
        }
        prop_assert_eq!(t.targets, expected);
    }

    // --- any input

    #[test]
    fn oversize_input_is_rejected_naming_the_limit(input in valid_input(), extra in 0..1024usize) {
        let mut padded = input;
        padded["padding"] = json!("x".repeat(MAX_EVENT_BYTES + extra));
        let why = rejection(padded.clone());
        prop_assert!(why.contains(&format!("at most {MAX_EVENT_BYTES}")), "{}", why);
        let why = parse_bytes(&serde_json::to_vec(&padded).unwrap()).unwrap_err().0;
        prop_assert!(why.contains(&format!("at most {MAX_EVENT_BYTES}")), "{}", why);
    }

    #[test]
    fn input_that_is_not_json_is_rejected(input in valid_input(), cut in 1..20usize) {
        let bytes = serde_json::to_vec(&input).unwrap();
        let why = parse_bytes(&bytes[..bytes.len() - cut]).unwrap_err().0;
        prop_assert!(why.contains("not JSON"), "{}", why);
    }

    #[test]
    fn input_that_is_not_an_object_is_rejected(input in valid_input()) {
        for wrapped in [json!([input.clone()]), json!(input.to_string()), json!(42)] {
            let why = rejection(wrapped);
            prop_assert!(why.contains("not a JSON object"), "{}", why);
        }
    }

    #[test]
    fn an_object_of_no_known_kind_is_rejected(input in valid_input()) {
        let mut unknown = input;
        let object = unknown.as_object_mut().unwrap();
        object.remove("action");
        object.remove("detail-type");
        let why = rejection(unknown);
        prop_assert!(why.contains("unknown input"), "{}", why);
    }

    #[test]
    fn a_workflow_input_sent_to_the_function_is_rejected(case_id in case_id(), t in target()) {
        let input = json!({"CaseId": case_id, "InstanceId": t.instance_id, "Account": t.account, "Region": t.region});
        let why = rejection(input);
        prop_assert!(why.contains("start the Step Functions workflow"), "{}", why);
    }

    // --- workflow tasks

    #[test]
    fn a_task_with_a_bad_case_id_is_rejected(task in task(), bad in invalid_case_id()) {
        let mut task = task;
        task["case_id"] = json!(bad);
        let why = rejection(task);
        prop_assert!(why.contains("case id"), "{}", why);
    }

    #[test]
    fn a_task_with_a_bad_instance_id_is_rejected(task in task(), bad in invalid_instance_id()) {
        let mut task = task;
        task["subject"]["instance_id"] = json!(bad);
        let why = rejection(task);
        prop_assert!(why.contains("is not an EC2 instance id"), "{}", why);
    }

    #[test]
    fn a_task_with_a_bad_account_is_rejected(task in task(), bad in invalid_account()) {
        let mut task = task;
        task["subject"]["account"] = json!(bad);
        let why = rejection(task);
        prop_assert!(why.contains("is not a 12-digit AWS account id"), "{}", why);
    }

    #[test]
    fn a_task_with_a_bad_region_is_rejected(task in task(), bad in invalid_region()) {
        let mut task = task;
        task["subject"]["region"] = json!(bad);
        let why = rejection(task);
        prop_assert!(why.contains("is not an AWS region name"), "{}", why);
    }

    #[test]
    fn a_task_with_an_unknown_action_is_rejected(task in task(), action in "[a-z_]{1,20}") {
        prop_assume!(!matches!(
            action.as_str(),
            "normalize" | "claim" | "prepare" | "managed" | "acquire" | "acquire_status"
                | "verify" | "contain" | "fail" | "snapshot_plan" | "snapshot_results"
        ));
        let mut task = task;
        task["action"] = json!(action);
        let why = rejection(task);
        prop_assert!(why.contains("workflow task") && why.contains("unknown variant"), "{}", why);
    }

    #[test]
    fn a_task_with_an_unknown_field_is_rejected(task in task(), field in "[a-z_]{1,12}") {
        prop_assume!(task.get(&field).is_none());
        let mut task = task;
        task[&field] = json!("x");
        let why = rejection(task);
        prop_assert!(why.contains("workflow task") && why.contains("unknown field"), "{}", why);
    }

    #[test]
    fn a_task_without_a_required_field_is_rejected(task in task(), field in prop_oneof![Just("case_id"), Just("subject")]) {
        let mut task = task;
        task.as_object_mut().unwrap().remove(field);
        let why = rejection(task);
        prop_assert!(why.contains("workflow task") && why.contains(&format!("missing field `{field}`")), "{}", why);
    }

    #[test]
    fn a_task_without_an_instance_id_is_rejected(task in task()) {
        let mut task = task;
        task["subject"].as_object_mut().unwrap().remove("instance_id");
        let why = rejection(task);
        prop_assert!(why.contains("missing field `instance_id`"), "{}", why);
    }

    // --- tag-change events

    #[test]
    fn a_tag_event_from_another_account_is_rejected((event, t) in tag_event(), other in account()) {
        prop_assume!(other != t.account);
        let mut event = event;
        event["account"] = json!(other);
        let why = rejection(event);
        prop_assert!(why.contains("not in the event's account/region"), "{}", why);
    }

    #[test]
    fn a_tag_event_from_another_region_is_rejected((event, t) in tag_event(), other in region()) {
        prop_assume!(other != t.region);
        let mut event = event;
        event["region"] = json!(other);
        let why = rejection(event);
        prop_assert!(why.contains("not in the event's account/region"), "{}", why);
    }

    #[test]
    fn a_tag_event_on_another_resource_type_is_rejected(
        (event, _) in tag_event(),
        (field, value) in prop_oneof![
            (Just("resource-type"), "volume|security-group|Instance|[a-z-]{0,12}"),
            (Just("service"), "s3|rds|EC2|[a-z0-9]{0,8}"),
        ],
    ) {
        prop_assume!(value != if field == "service" { "ec2" } else { "instance" });
        let mut event = event;
        event["detail"][field] = json!(value);
        let why = rejection(event);
        prop_assert!(why.contains("ec2/instance only"), "{}", why);
    }

    #[test]
    fn a_tag_event_naming_other_than_one_resource_is_rejected((event, t) in tag_event(), others in prop::collection::vec(target(), 0..4)) {
        let mut event = event;
        let mut resources: Vec<Value> = others.iter().map(|o| json!(arn(o))).collect();
        if !resources.is_empty() {
            resources.push(json!(arn(&t)));
        }
        event["resources"] = Value::Array(resources);
        let why = rejection(event);
        prop_assert!(why.contains("expected exactly one instance ARN"), "{}", why);
    }

    #[test]
    fn a_tag_event_on_an_arn_of_another_service_is_rejected((event, t) in tag_event(), service in "[a-z0-9]{1,12}") {
        prop_assume!(service != "ec2");
        let mut event = event;
        event["resources"] = json!([arn(&t).replacen(":ec2:", &format!(":{service}:"), 1)]);
        let why = rejection(event);
        prop_assert!(why.contains("is not an EC2 ARN"), "{}", why);
    }

    #[test]
    fn a_tag_event_on_another_ec2_resource_is_rejected((event, t) in tag_event(), kind in "(volume|snapshot|security-group|network-interface|image|[a-z]{1,10})") {
        prop_assume!(kind != "instance");
        let mut event = event;
        event["resources"] = json!([arn(&t).replacen(":instance/", &format!(":{kind}/"), 1)]);
        let why = rejection(event);
        prop_assert!(why.contains("is not an EC2 instance ARN"), "{}", why);
    }

    #[test]
    fn a_tag_event_whose_resource_is_no_arn_is_rejected((event, _) in tag_event(), text in "[a-z0-9:/-]{0,40}") {
        prop_assume!(text.matches(':').count() < 5);
        let mut event = event;
        event["resources"] = json!([text]);
        let why = rejection(event);
        prop_assert!(why.contains("is not an ARN"), "{}", why);
    }

    #[test]
    fn a_tag_event_on_a_bad_instance_id_is_rejected((event, t) in tag_event(), bad in invalid_instance_id()) {
        let mut event = event;
        event["resources"] = json!([Target { instance_id: bad, ..t }.instance_arn()]);
        let why = rejection(event);
        prop_assert!(why.contains("is not an EC2 instance id"), "{}", why);
    }

    #[test]
    fn a_tag_event_in_a_bad_account_is_rejected((event, t) in tag_event(), bad in invalid_account()) {
        let mut event = event;
        event["resources"] = json!([Target { account: bad.clone(), ..t }.instance_arn()]);
        event["account"] = json!(bad);
        let why = rejection(event);
        prop_assert!(why.contains("is not a 12-digit AWS account id"), "{}", why);
    }

    #[test]
    fn a_tag_event_in_a_bad_region_is_rejected((event, t) in tag_event(), bad in invalid_region()) {
        let mut event = event;
        let arn = format!("arn:aws:ec2:{bad}:{}:instance/{}", t.account, t.instance_id);
        event["resources"] = json!([arn]);
        event["region"] = json!(bad);
        let why = rejection(event);
        prop_assert!(why.contains("is not an AWS region name"), "{}", why);
    }

    #[test]
    fn an_event_of_another_source_is_rejected(
        (event, _) in tag_event(),
        (field, value) in prop_oneof![
            (Just("source"), "aws\\.ec2|aws\\.securityhub|[a-z.]{0,16}"),
            (Just("detail-type"), "EC2 Instance State-change Notification|[A-Za-z ]{0,24}"),
        ],
    ) {
        prop_assume!(value != if field == "source" { "aws.tag" } else { "Tag Change on Resource" });
        let mut event = event;
        event[field] = json!(value);
        let why = rejection(event);
        prop_assert!(why.contains("is not one the controller handles"), "{}", why);
    }

    #[test]
    fn a_tag_event_without_its_detail_fields_is_rejected((event, _) in tag_event(), field in prop_oneof![Just("service"), Just("resource-type")]) {
        let mut event = event;
        event["detail"].as_object_mut().unwrap().remove(field);
        let why = rejection(event);
        prop_assert!(why.contains("tag change detail") && why.contains(&format!("missing field `{field}`")), "{}", why);
    }

    // --- Security Hub custom actions

    #[test]
    fn a_finding_naming_an_instance_of_another_account_is_rejected((event, targets) in hub_event(), other in account(), pick in any::<prop::sample::Index>()) {
        let victim = pick.get(&targets).clone();
        prop_assume!(other != victim.account);
        let mut event = event;
        let moved = Target { account: other.clone(), ..victim };
        let resources = event["detail"]["findings"][0]["Resources"].as_array_mut().unwrap();
        resources[pick.index(targets.len())] = ec2_resource(&moved);
        let why = rejection(event);
        prop_assert!(why.contains("finding of account") && why.contains(&format!("of account {other}")), "{}", why);
    }

    #[test]
    fn an_action_naming_no_instance_is_rejected(account in account(), others in prop::collection::vec("Aws(S3Bucket|IamRole|Ec2Volume|Ec2SecurityGroup)", 0..4)) {
        let resources = others.iter().map(|kind| json!({"Type": kind, "Id": "arn:aws:s3:::b"})).collect();
        let why = rejection(super::hub_event_of(&account, Value::Array(resources)));
        prop_assert!(why.contains("no AwsEc2Instance"), "{}", why);
    }

    #[test]
    fn an_action_naming_too_many_instances_is_rejected(account in account(), region in region(), more in 1..20usize) {
        let resources = (0..MAX_TARGETS + more)
            .map(|n| ec2_resource(&Target { instance_id: format!("i-{n:017x}"), account: account.clone(), region: region.clone() }))
            .collect();
        let why = rejection(super::hub_event_of(&account, Value::Array(resources)));
        prop_assert!(why.contains(&format!("at most {MAX_TARGETS} per action")), "{}", why);
    }

    #[test]
    fn an_action_naming_a_bad_instance_id_is_rejected((event, targets) in hub_event(), bad in invalid_instance_id(), pick in any::<prop::sample::Index>()) {
        let victim = pick.get(&targets).clone();
        let mut event = event;
        let resources = event["detail"]["findings"][0]["Resources"].as_array_mut().unwrap();
        resources[pick.index(targets.len())] = ec2_resource(&Target { instance_id: bad, ..victim });
        let why = rejection(event);
        prop_assert!(why.contains("is not an EC2 instance id"), "{}", why);
    }

    #[test]
    fn an_action_whose_resource_has_no_id_is_rejected((event, targets) in hub_event(), pick in any::<prop::sample::Index>()) {
        let mut event = event;
        let resources = event["detail"]["findings"][0]["Resources"].as_array_mut().unwrap();
        resources[pick.index(targets.len())].as_object_mut().unwrap().remove("Id");
        let why = rejection(event);
        prop_assert!(why.contains("Security Hub detail") && why.contains("missing field `Id`"), "{}", why);
    }
}

#[test]
fn verify_takes_only_a_step_functions_execution_arn() {
    use crate::event::is_execution_arn;
    assert!(is_execution_arn(EXECUTION));
    assert!(is_execution_arn(
        "arn:aws:states:eu-west-1:222222222222:execution:airf-investigation:airf-i-0abc-1-1f2e"
    ));
    for bad in [
        "",
        "arn:aws:states:eu-west-1:222222222222:stateMachine:airf-investigation",
        "arn:aws:states:eu-west-1:222222222222:execution:airf-investigation",
        "arn:aws:states:eu-west-1:222222222222:execution:airf:x\ny",
        "arn:aws:states:eu-west-1:222222222222:execution:airf:x:y",
        "arn:aws:lambda:eu-west-1:222222222222:execution:airf:x",
        "arn:aws:states:eu-west-1:2222:execution:airf:x",
    ] {
        assert!(!is_execution_arn(bad), "{bad:?}");
    }
    let t = Target {
        instance_id: "i-0123456789abcdef0".into(),
        account: "111111111111".into(),
        region: "eu-west-1".into(),
    };
    let mut task = json!({"action": "verify", "case_id": "IR-1", "subject": subject(&t, 1),
                          "results": [], "execution_arn": "arn:aws:states:eu-west-1:222222222222:execution:x"});
    let why = rejection(task.clone());
    assert!(why.contains("not a Step Functions execution ARN"), "{why}");
    task.as_object_mut().unwrap().remove("execution_arn");
    let why = rejection(task);
    assert!(why.contains("missing field `execution_arn`"), "{why}");
}
