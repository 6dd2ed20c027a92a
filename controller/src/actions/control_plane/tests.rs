use super::*;
use crate::config::test_config;
use crate::fake::{FakeCloud, facts, subject};
use airf_evidence::control_plane::ControlPlaneError;
use std::collections::BTreeMap;

const INSTANCE: &str = "i-0123456789abcdef0";
const NOW: &str = "2026-12-02T17:00:00Z";
const EXECUTION: &str = "arn:aws:states:eu-west-1:222222222222:execution:airf:IR-1";
const PNG_BYTES: &[u8] = b"\x89PNG\r\n\x1a\nnot really a picture";

fn lookup(key: &str, value: &str, next_token: Option<&str>) -> ControlPlaneCall {
    ControlPlaneCall::LookupEvents {
        key: key.into(),
        value: value.into(),
        start: "2026-12-01T17:00:00Z".into(),
        end: NOW.into(),
        max_results: PAGE_SIZE,
        next_token: next_token.map(str::to_owned),
    }
}

fn answer(v: Value) -> ControlPlaneAnswer {
    ControlPlaneAnswer::Answer(v)
}

/// What EC2, IAM and CloudTrail answer about [`facts`]' instance, as `aws::control_plane` turns
/// their XML into JSON.
fn answers() -> BTreeMap<ControlPlaneCall, ControlPlaneAnswer> {
    use ControlPlaneCall::*;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let policy = "arn:aws:iam::111111111111:policy/WebRead";
    [
        (
            DescribeInstances { instance_id: INSTANCE.into() },
            answer(json!({"DescribeInstancesResponse": {"reservationSet": [{"instancesSet": [{
                "instanceId": INSTANCE, "vpcId": "vpc-1", "subnetId": "subnet-1",
                "iamInstanceProfile": {"arn": "arn:aws:iam::111111111111:instance-profile/WebServer", "id": "AIPA1"},
                "metadataOptions": {"httpTokens": "optional", "httpEndpoint": "enabled"},
                "groupSet": [{"groupId": "sg-web"}],
                "networkInterfaceSet": [{"networkInterfaceId": "eni-1", "subnetId": "subnet-1",
                                         "groupSet": [{"groupId": "sg-web"}, {"groupId": "sg-ssh"}]}]
            }]}]}})),
        ),
        (
            DescribeNetworkInterfaces { ids: vec!["eni-1".into()] },
            answer(json!({"DescribeNetworkInterfacesResponse": {"networkInterfaceSet": [{"networkInterfaceId": "eni-1"}]}})),
        ),
        (
            DescribeSecurityGroups { ids: vec!["sg-web".into(), "sg-ssh".into()] },
            answer(json!({"DescribeSecurityGroupsResponse": {"securityGroupInfo": [{"groupId": "sg-web"}, {"groupId": "sg-ssh"}]}})),
        ),
        (
            DescribeRouteTables { vpc_id: "vpc-1".into() },
            answer(json!({"DescribeRouteTablesResponse": {"routeTableSet": [{"routeTableId": "rtb-1"}]}})),
        ),
        (
            DescribeFlowLogs { resource_ids: vec!["vpc-1".into(), "subnet-1".into(), "eni-1".into()] },
            answer(json!({"DescribeFlowLogsResponse": {"flowLogSet": null}})),
        ),
        (
            GetInstanceProfile { name: "WebServer".into() },
            answer(json!({"GetInstanceProfileResponse": {"GetInstanceProfileResult": {"InstanceProfile": {
                "Roles": [{"RoleName": "WebServerRole"}]}}}})),
        ),
        (
            GetRole { name: "WebServerRole".into() },
            answer(json!({"GetRoleResponse": {"GetRoleResult": {"Role": {"RoleName": "WebServerRole"}}}})),
        ),
        (
            ListAttachedRolePolicies { role: "WebServerRole".into() },
            answer(json!({"ListAttachedRolePoliciesResponse": {"ListAttachedRolePoliciesResult": {
                "AttachedPolicies": [{"PolicyName": "WebRead", "PolicyArn": policy}]}}})),
        ),
        (
            GetPolicy { arn: policy.into() },
            answer(json!({"GetPolicyResponse": {"GetPolicyResult": {"Policy": {"DefaultVersionId": "v3"}}}})),
        ),
        (
            GetPolicyVersion { arn: policy.into(), version: "v3".into() },
            answer(json!({"GetPolicyVersionResponse": {"GetPolicyVersionResult": {"PolicyVersion": {"Document": "%7B%7D"}}}})),
        ),
        (
            ListRolePolicies { role: "WebServerRole".into() },
            answer(json!({"ListRolePoliciesResponse": {"ListRolePoliciesResult": {"PolicyNames": ["inline+1"]}}})),
        ),
        (
            GetRolePolicy { role: "WebServerRole".into(), policy: "inline+1".into() },
            answer(json!({"GetRolePolicyResponse": {"GetRolePolicyResult": {"PolicyDocument": "%7B%7D"}}})),
        ),
        (
            GetConsoleOutput { instance_id: INSTANCE.into() },
            answer(json!({"GetConsoleOutputResponse": {"output": b64(b"[    0.000000] Linux version 6.1\n")}})),
        ),
        (
            GetConsoleScreenshot { instance_id: INSTANCE.into() },
            answer(json!({"GetConsoleScreenshotResponse": {"instanceId": INSTANCE, "imageData": b64(PNG_BYTES)}})),
        ),
        (
            lookup("ResourceName", INSTANCE, None),
            answer(json!({"Events": [{"EventName": "StopInstances"}]})),
        ),
        (
            lookup("Username", INSTANCE, None),
            answer(json!({"Events": [{"EventName": "ListBuckets", "AccessKeyId": "ASIA1"},
                                     {"EventName": "GetObject", "AccessKeyId": "ASIA1"},
                                     {"EventName": "PutObject", "AccessKeyId": "ASIA2"}]})),
        ),
        (
            lookup("AccessKeyId", "ASIA1", None),
            answer(json!({"Events": [{"EventName": "ListBuckets"}]})),
        ),
        (
            lookup("AccessKeyId", "ASIA2", None),
            answer(json!({"Events": []})),
        ),
    ]
    .into_iter()
    .collect()
}

fn cloud() -> FakeCloud {
    let cloud = FakeCloud::with(facts(INSTANCE));
    cloud.lock().control_plane = answers();
    cloud
}

fn run(cloud: &FakeCloud) -> Result<ControlPlaneOutcome> {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
        .block_on(control_plane(
            cloud,
            &test_config(),
            "IR-1",
            &subject(INSTANCE),
            EXECUTION,
            NOW,
            Duration::ZERO,
        ))
}

/// The manifest, found by its name (the outcome is kept small and does not say where).
fn stored_manifest(cloud: &FakeCloud, _outcome: &ControlPlaneOutcome) -> ControlPlaneManifest {
    let s = cloud.lock();
    let bytes = s
        .objects
        .iter()
        .find(|((_, k), _)| k.ends_with(schema::MANIFEST_NAME))
        .unwrap()
        .1
        .clone();
    let parsed: Result<_, ControlPlaneError<serde_json::Error>> =
        ControlPlaneManifest::decode(serde_json::from_slice(&bytes), || {
            serde_json::from_slice(&bytes)
        });
    parsed.unwrap()
}

fn object(cloud: &FakeCloud, key: &str) -> Vec<u8> {
    cloud
        .lock()
        .objects
        .iter()
        .find(|((_, k), _)| k == key)
        .unwrap()
        .1
        .clone()
}

#[test]
fn everything_is_stored_hashed_and_listed() {
    let cloud = cloud();
    let outcome = run(&cloud).unwrap();
    let folder = format!(
        "{}/IR-1/{INSTANCE}/control-plane/20261202T170000Z/",
        test_config().evidence_prefix
    );
    assert!(
        cloud
            .lock()
            .objects
            .keys()
            .any(|(b, k)| *b == test_config().evidence_bucket
                && *k == format!("{folder}control-plane.manifest.json"))
    );
    // Small, for the execution's output: no refusals, nothing cut, only the count.
    assert_eq!(serde_json::to_string(&outcome).unwrap(), r#"{"stored":20}"#);
    assert!(outcome.refused.is_empty(), "{:?}", outcome.refused);
    let m = stored_manifest(&cloud, &outcome);
    let names: Vec<&str> = m.objects.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "describe-instances.json",
            "imds-settings.json",
            "network-interfaces.json",
            "security-groups.json",
            "route-tables.json",
            "flow-logs.json",
            "instance-profile.json",
            "role.json",
            "role-attached-policies.json",
            "managed-policy-1.json",
            "managed-policy-1-version.json",
            "role-inline-policies.json",
            "inline-policy-1.json",
            "console-output.json",
            "console-output.txt",
            "console-screenshot.png",
            "cloudtrail-instance.json",
            "cloudtrail-instance-session.json",
            "cloudtrail-access-key-1.json",
            "cloudtrail-access-key-2.json",
        ]
    );
    assert_eq!(outcome.stored, names.len());
    for (o, s) in m.stored() {
        let bytes = object(&cloud, &s.key);
        assert!(s.key.starts_with(&folder), "{}", s.key);
        assert_eq!(
            (bytes.len() as u64, sha256_hex(&bytes)),
            (s.size, s.sha256.clone()),
            "{}",
            o.name
        );
    }
    assert_eq!(
        object(&cloud, &format!("{folder}console-screenshot.png")),
        PNG_BYTES
    );
    assert_eq!(
        object(&cloud, &format!("{folder}console-output.txt")),
        b"[    0.000000] Linux version 6.1\n"
    );
    let imds: Value =
        serde_json::from_slice(&object(&cloud, &format!("{folder}imds-settings.json"))).unwrap();
    assert_eq!(imds["MetadataOptions"]["httpTokens"], "optional");
    assert_eq!(m.objects[15].call.operation, "GetConsoleScreenshot");
    assert_eq!(m.cloudtrail.start_time, "2026-12-01T17:00:00Z");
    assert_eq!(
        (m.case.as_str(), m.instance_id.as_str()),
        ("IR-1", INSTANCE)
    );
    assert!(m.made_by.contains(EXECUTION));
    // Written with If-None-Match, and the manifest last.
    let s = cloud.lock();
    let puts: Vec<&String> = s
        .calls
        .iter()
        .filter(|c| c.starts_with("PutObject"))
        .collect();
    assert!(puts.iter().all(|c| c.contains("if-none-match=*")));
    assert!(puts.last().unwrap().contains("control-plane.manifest.json"));
    // Read-only: nothing but the stored objects was changed.
    assert_eq!(puts.len(), s.calls.len(), "{:?}", s.calls);
}

#[test]
fn refused_calls_are_recorded_and_the_rest_goes_on() {
    let cloud = cloud();
    {
        let mut s = cloud.lock();
        s.control_plane.insert(
            ControlPlaneCall::GetConsoleScreenshot {
                instance_id: INSTANCE.into(),
            },
            ControlPlaneAnswer::Refused {
                code: "UnsupportedOperation".into(),
                message: "This instance type does not support screenshots.".into(),
            },
        );
        // Not in the fake: refused UnauthorizedOperation.
        s.control_plane
            .remove(&ControlPlaneCall::DescribeRouteTables {
                vpc_id: "vpc-1".into(),
            });
    }
    let outcome = run(&cloud).unwrap();
    assert_eq!(
        outcome.refused,
        [
            "DescribeRouteTables: UnauthorizedOperation",
            "GetConsoleScreenshot: UnsupportedOperation"
        ]
    );
    let m = stored_manifest(&cloud, &outcome);
    let shot = m
        .objects
        .iter()
        .find(|o| o.name == "console-screenshot.png")
        .unwrap();
    assert!(shot.stored.is_none());
    assert!(
        shot.error
            .as_ref()
            .unwrap()
            .message
            .contains("does not support")
    );
    assert_eq!(m.stored().count(), 18);
}

#[test]
fn an_instance_that_cannot_be_described_still_has_its_console_and_trail() {
    let cloud = cloud();
    cloud
        .lock()
        .control_plane
        .remove(&ControlPlaneCall::DescribeInstances {
            instance_id: INSTANCE.into(),
        });
    let outcome = run(&cloud).unwrap();
    let m = stored_manifest(&cloud, &outcome);
    let names: Vec<&str> = m.stored().map(|(o, _)| o.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "console-output.json",
            "console-output.txt",
            "console-screenshot.png",
            "cloudtrail-instance.json",
            "cloudtrail-instance-session.json",
            "cloudtrail-access-key-1.json",
            "cloudtrail-access-key-2.json",
        ]
    );
    assert_eq!(
        outcome.refused,
        ["DescribeInstances: UnauthorizedOperation"]
    );
}

#[test]
fn cloudtrail_is_read_within_its_bounds() {
    let cloud = cloud();
    {
        let mut s = cloud.lock();
        // A session with endless pages and more keys than are looked up.
        let events: Vec<Value> = (0..MAX_ACCESS_KEYS + 2)
            .map(|i| json!({"AccessKeyId": format!("ASIAK{i}")}))
            .collect();
        for page in 0..=MAX_PAGES {
            let token = (page > 0).then(|| format!("t{page}"));
            s.control_plane.insert(
                lookup("Username", INSTANCE, token.as_deref()),
                answer(json!({"Events": events, "NextToken": format!("t{}", page + 1)})),
            );
        }
        for i in 0..MAX_ACCESS_KEYS + 2 {
            s.control_plane.insert(
                lookup("AccessKeyId", &format!("ASIAK{i}"), None),
                answer(json!({"Events": []})),
            );
        }
    }
    let outcome = run(&cloud).unwrap();
    assert_eq!(
        outcome.truncated,
        [
            format!("Username={INSTANCE}"),
            "2 more access keys than the 5 looked up".to_owned()
        ]
    );
    let s = cloud.lock();
    let lookups: Vec<&String> = s
        .reads
        .iter()
        .filter(|r| r.starts_with("LookupEvents"))
        .collect();
    // 1 for the instance, MAX_PAGES for the session, one per key looked up.
    assert_eq!(lookups.len(), 1 + MAX_PAGES as usize + MAX_ACCESS_KEYS);
    assert!(lookups.iter().all(|l| l.contains("\"MaxResults\":50")));
    drop(s);
    let m = stored_manifest(&cloud, &outcome);
    assert_eq!(m.cloudtrail.truncated, outcome.truncated);
    let session = m
        .objects
        .iter()
        .find(|o| o.name == "cloudtrail-instance-session.json")
        .unwrap();
    assert_eq!(
        session.call.parameters.get("Pages"),
        Some(&airf_evidence::Value::Unsigned(5))
    );
}

#[test]
fn lookups_are_paced() {
    let cloud = cloud();
    let pace = Duration::from_millis(40);
    let started = std::time::Instant::now();
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
        .block_on(control_plane(
            &cloud,
            &test_config(),
            "IR-1",
            &subject(INSTANCE),
            EXECUTION,
            NOW,
            pace,
        ))
        .unwrap();
    // Four lookups: three waits.
    assert!(started.elapsed() >= pace * 3, "{:?}", started.elapsed());
    assert_eq!(stored_manifest_pace(&cloud), 40);
}

fn stored_manifest_pace(cloud: &FakeCloud) -> u64 {
    let s = cloud.lock();
    let bytes = s
        .objects
        .iter()
        .find(|((_, k), _)| k.ends_with(schema::MANIFEST_NAME))
        .unwrap()
        .1;
    serde_json::from_slice::<ControlPlaneManifest>(bytes)
        .unwrap()
        .cloudtrail
        .pace_ms
}

#[test]
fn a_failure_to_reach_aws_is_transient_and_nothing_is_replaced() {
    let cloud = cloud();
    cloud.lock().fail_on = Some(("GetRole".into(), true));
    let err = run(&cloud).unwrap_err();
    assert_eq!(err.kind(), crate::error::Kind::Transient, "{err}");
    // The same second again: the folder is there, and nothing is replaced.
    let cloud = self::cloud();
    run(&cloud).unwrap();
    let err = run(&cloud).unwrap_err();
    assert!(err.to_string().contains("never replaced"), "{err}");
}

#[test]
fn described_reads_what_the_other_calls_need() {
    let d = described(
        &answers()
            .values()
            .next()
            .map(|a| match a {
                ControlPlaneAnswer::Answer(v) => v.clone(),
                ControlPlaneAnswer::Refused { .. } => Value::Null,
            })
            .unwrap(),
    );
    assert_eq!(d.vpc_id.as_deref(), Some("vpc-1"));
    assert_eq!(d.group_ids, ["sg-web", "sg-ssh"]);
    assert_eq!(d.profile_name.as_deref(), Some("WebServer"));
    assert_eq!(described(&json!({"Other": 1})), Described::default());
}
