//! Control-plane evidence against moto: the workflow's ControlPlane step stores what EC2, IAM
//! and CloudTrail say about the instance before containment changes it, `airf-agent verify`
//! checks every object against its manifest and names the one a test changes, and every call is
//! allowed by the deployed policies. moto lacks GetConsoleScreenshot and LookupEvents:
//! tests/scripts/moto_control_plane.py answers them, LookupEvents from the events this test
//! plants (it plays CloudTrail).

use airf_e2e::emulator::{ACCOUNT, Emulator, REGION, SUSPECT_ROLE};
use airf_e2e::{agent_bin, run_agent};
use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

/// The emulator's clock (emulator::NOW) in Unix seconds: CloudTrail is read 24 hours back.
const NOW_UNIX: i64 = 1_795_975_200;
const KEY_A: &str = "ASIAEXAMPLEKEYAAAAAA";
const KEY_B: &str = "ASIAEXAMPLEKEYBBBBBB";

/// CloudTrail as this test plays it: a call on the instance by someone else, 60 calls with the
/// instance's role session (two pages of 50) under two access keys, and one older than the
/// window.
fn plant_events(emu: &Emulator, id: &str) -> Result<()> {
    let dir = emu
        .server
        .env
        .iter()
        .find(|(k, _)| k == "AIRF_SSM_OUTPUT_DIR")
        .map(|(_, v)| v.clone())
        .context("no AIRF_SSM_OUTPUT_DIR")?;
    let mut events = vec![json!({
        "EventId": "e-instance", "EventName": "ModifyInstanceMetadataOptions",
        "EventTime": NOW_UNIX - 3_600, "EventSource": "ec2.amazonaws.com", "ReadOnly": "false",
        "Username": "attacker", "AccessKeyId": "AKIAATTACKER00000000",
        "Resources": [{"ResourceType": "AWS::EC2::Instance", "ResourceName": id}],
        "CloudTrailEvent": "{}"
    })];
    for i in 0..60 {
        events.push(json!({
            "EventId": format!("e-session-{i}"), "EventName": "GetObject",
            "EventTime": NOW_UNIX - 7_200 + i, "EventSource": "s3.amazonaws.com", "ReadOnly": "true",
            "Username": id, "AccessKeyId": if i < 30 { KEY_A } else { KEY_B },
            "Resources": [], "CloudTrailEvent": "{}"
        }));
    }
    events.push(json!({
        "EventId": "e-old", "EventName": "ListBuckets", "EventTime": NOW_UNIX - 90_000,
        "Username": id, "AccessKeyId": KEY_A, "Resources": [], "CloudTrailEvent": "{}"
    }));
    std::fs::write(
        std::path::Path::new(&dir).join("cloudtrail-events.json"),
        serde_json::to_vec(&events)?,
    )?;
    Ok(())
}

fn get_json(emu: &Emulator, uri: &str) -> Result<Value> {
    let out = emu.server.aws(&["s3", "cp", uri, "-"])?;
    serde_json::from_slice(&out.stdout).with_context(|| format!("{uri} is not JSON"))
}

fn verify(emu: &Emulator, manifest: &str) -> Result<airf_e2e::AgentRun> {
    run_agent(
        emu.server
            .command(agent_bin()?)
            .args(["verify", manifest, "--json"]),
    )
}

#[test]
fn the_state_before_containment_is_stored_verified_and_allowed() -> Result<()> {
    let emu = Emulator::start("")?;
    let id = emu.instance(&[("Name", "web-1")])?;
    let before = emu.describe(&id)?;
    let groups_before: Vec<String> = before
        .security_groups()
        .iter()
        .filter_map(|g| g.group_id().map(str::to_owned))
        .collect();
    // The suspect's role has a managed and an inline policy.
    emu.rt.block_on(async {
        let policy = emu
            .iam
            .create_policy()
            .policy_name("WebRead")
            .policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}"#)
            .send()
            .await?;
        let arn = policy.policy().and_then(|p| p.arn()).context("no policy ARN")?;
        emu.iam
            .attach_role_policy()
            .role_name(SUSPECT_ROLE)
            .policy_arn(arn)
            .send()
            .await?;
        emu.iam
            .put_role_policy()
            .role_name(SUSPECT_ROLE)
            .policy_name("inline-1")
            .policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:ListBucket","Resource":"*"}]}"#)
            .send()
            .await?;
        anyhow::Ok(())
    })?;
    plant_events(&emu, &id)?;

    let run = emu.run_containment("IR-CP", &[&id])?;
    run.ensure_succeeded()?;
    let actions: Vec<&str> = run.actions.iter().map(String::as_str).collect();
    ensure!(
        actions.starts_with(&["normalize", "claim", "control_plane", "contain"]),
        "{actions:?}"
    );
    let entry = &run.outcome["output"]["instances"][0];
    let cp = &entry["control_plane"];
    ensure!(cp == &json!({"stored": 20}), "only the count: {cp}");
    // The entry is kept small (a fleet's entries share 256 KiB): the manifest is found by name.
    let manifest_key = emu
        .server
        .keys(&format!("evidence/IR-CP/{id}/control-plane/"))?
        .into_iter()
        .find(|k| k.ends_with("/control-plane.manifest.json"))
        .context("no control-plane manifest")?;
    let manifest_uri = format!("s3://{}/{manifest_key}", emu.server.bucket);
    let manifest = get_json(&emu, &manifest_uri)?;
    let names: Vec<&str> = manifest["objects"]
        .as_array()
        .context("no objects")?
        .iter()
        .filter_map(|o| o["name"].as_str())
        .collect();
    for expected in [
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
    ] {
        ensure!(names.contains(&expected), "{expected} missing: {names:?}");
    }
    ensure!(names.len() == 20, "every call answered: {names:?}");
    ensure!(
        manifest["objects"]
            .as_array()
            .is_some_and(|o| o.iter().all(|o| o["error"].is_null()))
            && manifest["cloudtrail"].get("truncated").is_none(),
        "nothing refused, nothing cut: {manifest}"
    );
    let folder = manifest_uri
        .rsplit_once('/')
        .map(|(f, _)| f.to_owned())
        .context("no folder")?;
    let object = |name: &str| get_json(&emu, &format!("{folder}/{name}"));

    // The state before containment: the instance's own groups and profile, not airf's.
    let described = object("describe-instances.json")?;
    let instance = &described["DescribeInstancesResponse"]["reservationSet"][0]["instancesSet"][0];
    ensure!(instance["instanceId"] == json!(id), "{described}");
    let recorded_groups: Vec<&str> = instance["groupSet"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| g["groupId"].as_str())
        .collect();
    ensure!(
        recorded_groups == groups_before,
        "{recorded_groups:?} vs {groups_before:?}"
    );
    ensure!(
        instance["iamInstanceProfile"]["arn"]
            .as_str()
            .is_some_and(|a| a.ends_with("/WebServer")),
        "{instance}"
    );
    let after = emu.describe(&id)?;
    ensure!(
        after.security_groups().iter().all(|g| !groups_before
            .iter()
            .any(|b| Some(b.as_str()) == g.group_id())),
        "containment changed the groups since: {after:?}"
    );
    let inline = object("inline-policy-1.json")?;
    ensure!(
        inline.to_string().contains("s3%3AListBucket")
            || inline.to_string().contains("s3:ListBucket"),
        "{inline}"
    );
    // CloudTrail: the instance's own event, the session's 60 in two pages, both keys, nothing
    // older than 24 hours.
    let on_instance = object("cloudtrail-instance.json")?;
    ensure!(
        on_instance["Pages"][0]["Events"][0]["EventId"] == json!("e-instance"),
        "{on_instance}"
    );
    let session = object("cloudtrail-instance-session.json")?;
    let pages = session["Pages"].as_array().context("no pages")?;
    let events: usize = pages
        .iter()
        .map(|p| p["Events"].as_array().map_or(0, Vec::len))
        .sum();
    ensure!(
        pages.len() == 2 && events == 60,
        "{} pages, {events} events",
        pages.len()
    );
    let mut keys = Vec::new();
    for n in 1..=2 {
        let k = object(&format!("cloudtrail-access-key-{n}.json"))?;
        let listed = k["Pages"][0]["Events"].as_array().context("no events")?;
        ensure!(listed.len() == 30, "{k}");
        keys.push(
            listed[0]["AccessKeyId"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    keys.sort();
    ensure!(keys == [KEY_A, KEY_B], "{keys:?}");
    let png = emu
        .server
        .aws(&["s3", "cp", &format!("{folder}/console-screenshot.png"), "-"])?
        .stdout;
    ensure!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");

    // verify: intact, then one object changed is named.
    let ok = verify(&emu, &manifest_uri)?;
    ensure!(
        ok.code == 0 && ok.json["status"] == json!("intact"),
        "{ok:?}"
    );
    let tmp = tempfile::tempdir()?;
    let forged = tmp.path().join("console-output.txt");
    std::fs::write(&forged, b"nothing happened here\n")?;
    emu.server.aws(&[
        "s3",
        "cp",
        &forged.display().to_string(),
        &format!("{folder}/console-output.txt"),
    ])?;
    let changed = verify(&emu, &manifest_uri)?;
    ensure!(
        changed.code == 4
            && changed.json["status"] == json!("not_intact")
            && changed.json["message"].as_str().is_some_and(
                |m| m.contains("console-output.txt") && !m.contains("describe-instances.json")
            ),
        "{changed:?}"
    );

    // Every call, the new ones included, is allowed by the deployed policies.
    let report = emu.check_iam()?;
    ensure!(report.contains("0 denied"), "{report}");
    let lookups = emu
        .calls
        .records()?
        .iter()
        .filter(|r| r["operation"] == json!("LookupEvents") && r["account"] == json!(ACCOUNT))
        .count();
    ensure!(
        lookups == 5,
        "{lookups} LookupEvents calls: 1 instance, 2 session pages, 2 keys"
    );
    Ok(())
}

/// The evaluation of the control-plane writes is not vacuous: the controller's role may write
/// only new objects, and only under `<case>/<instance>/control-plane/`.
#[test]
fn control_plane_writes_are_denied_elsewhere_or_without_if_none_match() -> Result<()> {
    let emu = Emulator::start("")?;
    let creds = emu.role_credentials(&emu.deployment.controller_role, "airf-controller")?;
    let sdk = emu.rt.block_on(
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(emu.server.endpoint()?)
            .region(aws_config::Region::new(REGION))
            .credentials_provider(creds)
            .load(),
    );
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    let instance = format!("{}/IR-DENY/i-0123456789abcdef0", emu.config.evidence_prefix);
    let put = |key: String, if_none_match: bool| -> Result<()> {
        let mut p = s3
            .put_object()
            .bucket(&emu.config.evidence_bucket)
            .key(key)
            .body(b"x".to_vec().into());
        if if_none_match {
            p = p.if_none_match("*");
        }
        emu.rt.block_on(p.send())?;
        Ok(())
    };
    put(format!("{instance}/control-plane/t/role.json"), true)?;
    emu.check_iam()?;
    for (key, if_none_match, statement) in [
        (
            format!("{instance}/control-plane/t/route-tables.json"),
            false,
            "ControllerNeverOverwrites",
        ),
        (
            format!("{instance}/t/role.json"),
            true,
            "no statement allows it",
        ),
    ] {
        std::fs::write(&emu.calls.path, "")?;
        put(key.clone(), if_none_match)?;
        let Err(e) = emu.check_iam() else {
            anyhow::bail!("PutObject {key} (If-None-Match {if_none_match}) passed");
        };
        let message = format!("{e:#}");
        ensure!(
            message.contains("s3:PutObject") && message.contains(statement),
            "{key}: {message}"
        );
    }
    // The denials were this test's own doing: its log must not fail tests/run.sh's evaluation
    // of every test's calls.
    std::fs::write(&emu.calls.path, "")?;
    Ok(())
}

/// moto_control_plane.py answers LookupEvents as CloudTrail does: pages chained by NextToken
/// only within one request, and AWS's refusals by name.
#[test]
fn the_emulated_lookup_events_pages_and_refuses_as_cloudtrail_does() -> Result<()> {
    let emu = Emulator::start("")?;
    let id = "i-0123456789abcdef0";
    plant_events(&emu, id)?;
    let window = [
        "--start-time",
        "2026-11-28T18:00:00Z",
        "--end-time",
        "2026-11-29T18:00:00Z",
    ];
    let lookup = |extra: &[&str]| -> Result<std::process::Output> {
        let mut args = vec![
            "cloudtrail",
            "lookup-events",
            "--no-paginate",
            "--output",
            "json",
        ];
        args.extend_from_slice(extra);
        Ok(emu.server.command("aws").args(&args).output()?)
    };
    let session = format!("AttributeKey=Username,AttributeValue={id}");
    let first = lookup(&[&["--lookup-attributes", &session][..], &window[..]].concat())?;
    ensure!(first.status.success(), "{first:?}");
    let page: Value = serde_json::from_slice(&first.stdout)?;
    ensure!(
        page["Events"].as_array().map(Vec::len) == Some(50),
        "{page}"
    );
    let token = page["NextToken"].as_str().context("no NextToken")?;
    let second = lookup(
        &[
            &["--lookup-attributes", &session, "--next-token", token][..],
            &window[..],
        ]
        .concat(),
    )?;
    let rest: Value = serde_json::from_slice(&second.stdout)?;
    ensure!(
        rest["Events"].as_array().map(Vec::len) == Some(10) && rest.get("NextToken").is_none(),
        "{rest}"
    );
    let key = format!("AttributeKey=AccessKeyId,AttributeValue={KEY_A}");
    for (args, code) in [
        (
            vec!["--lookup-attributes", &key, "--next-token", token],
            "InvalidNextTokenException",
        ),
        (vec!["--max-results", "51"], "InvalidMaxResultsException"),
        (
            vec![
                "--start-time",
                "2026-11-29T18:00:00Z",
                "--end-time",
                "2026-11-28T18:00:00Z",
            ],
            "InvalidTimeRangeException",
        ),
        (
            vec!["--lookup-attributes", &key, &session],
            "InvalidLookupAttributesException",
        ),
    ] {
        let out = lookup(&args)?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            !out.status.success() && stderr.contains(code),
            "{args:?}: {stderr}"
        );
    }
    Ok(())
}
