use super::*;
use crate::config::{test_config, test_config_with_snapshots};
use crate::fake::{FakeCloud, facts, subject};
use crate::model::{InstanceState, NotAcquired, Volume};
use proptest::prelude::*;

const ID: &str = "i-0123456789abcdef0";
const CASE: &str = "IR-9";

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

fn not_acquired(why: &str) -> Evidence {
    Evidence::NotAcquired(NotAcquired {
        kind: EvidenceKind::Memory,
        not_acquired: why.into(),
    })
}

/// A stopped instance with a root and a data volume.
fn two_volumes() -> InstanceFacts {
    let mut f = facts(ID);
    f.state = InstanceState::Stopped;
    f.volumes.push(Volume {
        id: "vol-2".into(),
        device: "/dev/sdf".into(),
        delete_on_termination: false,
    });
    f
}

fn plan(cloud: &FakeCloud, config: &Config) -> Result<SnapshotPlan> {
    block_on(snapshot_plan(
        cloud,
        config,
        CASE,
        &subject(ID),
        &not_acquired("the instance is stopped"),
    ))
}

#[test]
fn an_instance_without_volumes_is_refused_before_anything_is_changed() {
    let mut f = facts(ID);
    f.volumes.clear();
    let cloud = FakeCloud::with(f);
    let err = plan(&cloud, &test_config_with_snapshots()).unwrap_err();
    assert!(
        matches!(&err, Error::Failed(m) if m.contains("has no EBS volume attached")
            && m.contains(ID) && m.contains("instance-store")),
        "{err}"
    );
    assert!(cloud.lock().calls.is_empty(), "{:?}", cloud.lock().calls);
}

#[test]
fn without_the_snapshot_task_the_plan_says_what_is_not_deployed() {
    let cloud = FakeCloud::with(two_volumes());
    let err = plan(&cloud, &test_config()).unwrap_err();
    assert!(
        matches!(&err, Error::Config(m) if m.contains("AIRF_SNAPSHOT_CLUSTER_ARN")),
        "{err}"
    );
    assert!(cloud.lock().calls.is_empty());
}

/// The case's snapshot of a volume (taken by an earlier attempt, or by a responder) is used
/// again; the missing one is taken, tagged with the case and the instance; each task gets the
/// deployment's cluster, task definition and network, and its own command line.
#[test]
fn case_snapshots_are_reused_and_the_missing_ones_taken_tagged() {
    let cloud = FakeCloud::with(two_volumes());
    cloud
        .lock()
        .snapshots
        .push(("vol-1".into(), "snap-0aaa".into()));
    let config = test_config_with_snapshots();
    let p = plan(&cloud, &config).unwrap();
    let ids: Vec<(&str, &str, bool)> = p
        .tasks
        .iter()
        .map(|t| (t.volume_id.as_str(), t.snapshot_id.as_str(), t.reused))
        .collect();
    assert_eq!(
        ids,
        [("vol-1", "snap-0aaa", true), ("vol-2", "snap-vol-2", false)]
    );
    let s = cloud.lock();
    let created: Vec<&String> = s
        .calls
        .iter()
        .filter(|c| c.starts_with("CreateSnapshot"))
        .collect();
    assert_eq!(created.len(), 1, "{:?}", s.calls);
    assert!(
        created[0].contains("vol-2")
            && created[0].contains(r#""airf:case": "IR-9""#)
            && created[0].contains(&format!(r#""airf:instance": "{ID}""#)),
        "{}",
        created[0]
    );
    let deployed = config.snapshot.as_ref().unwrap();
    let t = &p.tasks[1];
    assert_eq!(t.cluster, deployed.cluster_arn);
    assert_eq!(t.task_definition, deployed.task_definition_arn);
    assert_eq!(t.subnets, deployed.subnet_ids);
    assert_eq!(
        t.security_groups,
        std::slice::from_ref(&deployed.security_group_id)
    );
    assert_eq!(t.container, "airf-agent");
    assert_eq!(
        t.command,
        [
            "snapshot",
            "snap-vol-2",
            "--to",
            "s3://forensics-evidence/evidence/",
            "--case",
            "IR-9",
            "--instance",
            ID,
            "--role-arn",
            "arn:aws:iam::111111111111:role/AirfSnapshotReader",
            "--snapshot-region",
            "eu-west-1",
            "--region",
            "us-east-1",
            "--json",
            "--no-progress",
        ]
    );
    // Memory's absence is on the instance and in the notification, with the reason.
    let tags = &s.instances[ID].tags;
    assert_eq!(
        tags.get(MEMORY_TAG).map(String::as_str),
        Some("not acquired: the instance is stopped")
    );
    let (_, subject_line, message) = s.published.first().unwrap();
    assert!(
        subject_line.contains("disks from EBS snapshots"),
        "{subject_line}"
    );
    assert!(
        message.contains("Memory was NOT acquired: the instance is stopped")
            && message.contains("snap-0aaa (vol-1 /dev/xvda, taken before)")
            && message.contains("snap-vol-2 (vol-2 /dev/sdf, taken now)"),
        "{message}"
    );
}

/// A second plan (a retried step) takes nothing again.
#[test]
fn a_retried_plan_takes_no_second_snapshot() {
    let cloud = FakeCloud::with(two_volumes());
    let config = test_config_with_snapshots();
    let first = plan(&cloud, &config).unwrap();
    let second = plan(&cloud, &config).unwrap();
    let snaps = |p: &SnapshotPlan| -> Vec<String> {
        p.tasks.iter().map(|t| t.snapshot_id.clone()).collect()
    };
    assert_eq!(snaps(&first), snaps(&second));
    assert!(second.tasks.iter().all(|t| t.reused));
    let created = cloud
        .lock()
        .calls
        .iter()
        .filter(|c| c.starts_with("CreateSnapshot"))
        .count();
    assert_eq!(created, 2);
}

#[test]
fn the_command_carries_the_evidence_options_the_documents_give_disk() {
    let mut config = test_config_with_snapshots();
    config.kms_key_id = "alias/airf-evidence".into();
    config.agent_endpoint_url = "http://127.0.0.1:9000".into();
    config.evidence_prefix = "cases/2026".into();
    let f = facts(ID);
    let task = config.snapshot.clone().unwrap();
    let c = command(&config, &task, CASE, &f.target, "snap-1");
    let after = |flag: &str| {
        c.iter()
            .position(|a| a == flag)
            .and_then(|i| c.get(i + 1))
            .cloned()
    };
    assert_eq!(
        after("--to").as_deref(),
        Some("s3://forensics-evidence/cases/2026/")
    );
    assert_eq!(
        after("--sse-kms-key-id").as_deref(),
        Some("alias/airf-evidence")
    );
    assert_eq!(
        after("--endpoint-url").as_deref(),
        Some("http://127.0.0.1:9000")
    );
    config.evidence_prefix = String::new();
    let c = command(&config, &task, CASE, &f.target, "snap-1");
    assert!(c.contains(&"s3://forensics-evidence/".to_owned()), "{c:?}");
    let mut gov = f.target.clone();
    gov.region = "us-gov-west-1".into();
    assert!(reader_role_arn(&task, &gov).starts_with("arn:aws-us-gov:iam::111111111111:role/"));
}

/// A stored result of `airf-agent snapshot`, as the agent writes `result.json`.
fn stored_result(cloud: &FakeCloud, folder: &str, snapshot: &str, status: &str) {
    let bucket = test_config().evidence_bucket;
    let report = serde_json::json!({
        "command": "snapshot", "status": status, "exit_code": 0, "case": CASE,
        "evidence_folder": format!("s3://{bucket}/{folder}/"),
        "sources": [{"source": snapshot, "status": status, "raw_size": 1, "compressed_size": 1,
            "unreadable_bytes": 0, "unreadable_ranges": 0, "duration_seconds": 1.0,
            "throughput_mb_s": 1.0,
            "manifest": {"location": format!("s3://{bucket}/{folder}/{snapshot}.manifest.json"),
                         "bucket": bucket, "key": format!("{folder}/{snapshot}.manifest.json")}}],
        "errors": [], "duration_seconds": 1.0});
    cloud.lock().objects.insert(
        (bucket, format!("{folder}/result.json")),
        serde_json::to_vec(&report).unwrap(),
    );
}

fn planned(snapshots: &[&str]) -> SnapshotPlan {
    let config = test_config_with_snapshots();
    let task = config.snapshot.clone().unwrap();
    SnapshotPlan {
        tasks: snapshots
            .iter()
            .map(|s| SnapshotRun {
                volume_id: format!("vol-{s}"),
                device: "/dev/xvda".into(),
                snapshot_id: (*s).into(),
                reused: false,
                cluster: task.cluster_arn.clone(),
                task_definition: task.task_definition_arn.clone(),
                container: "airf-agent".into(),
                subnets: task.subnet_ids.clone(),
                security_groups: vec![task.security_group_id.clone()],
                command: command(&config, &task, CASE, &subject(ID).target, s),
            })
            .collect(),
    }
}

fn ran(snapshots: &[&str]) -> Vec<TaskRun> {
    snapshots
        .iter()
        .map(|s| TaskRun {
            snapshot_id: (*s).into(),
            task_arn: format!("arn:aws:ecs:us-east-1:222222222222:task/airf/{s}"),
        })
        .collect()
}

/// Each snapshot's latest complete result is found in the instance's folder, whatever else is
/// there (the memory run's result, an earlier failed attempt), and carries its task's ARN.
#[test]
fn results_are_the_latest_complete_run_of_each_snapshot() {
    let cloud = FakeCloud::with(two_volumes());
    let base = format!("evidence/{CASE}/{ID}");
    stored_result(
        &cloud,
        &format!("{base}/20261202T060000Z-aaaaaaaa"),
        "snap-1",
        "failed",
    );
    stored_result(
        &cloud,
        &format!("{base}/20261202T060100Z-bbbbbbbb"),
        "snap-1",
        "complete",
    );
    stored_result(
        &cloud,
        &format!("{base}/20261202T060000Z-cccccccc"),
        "snap-2",
        "complete",
    );
    // Another case's folder is not read.
    stored_result(
        &cloud,
        &format!("evidence/IR-1/{ID}/20261202T070000Z-dddddddd"),
        "snap-1",
        "complete",
    );
    let results = block_on(snapshot_results(
        &cloud,
        &test_config(),
        CASE,
        &subject(ID),
        &planned(&["snap-1", "snap-2"]),
        &ran(&["snap-2", "snap-1"]),
    ))
    .unwrap();
    let got: Vec<(&str, &str)> = results
        .iter()
        .map(|r| (r.report.evidence_folder.as_str(), r.command_id.as_str()))
        .collect();
    assert_eq!(got.len(), 2);
    assert!(got[0].0.ends_with("20261202T060100Z-bbbbbbbb/") && got[0].1.ends_with("/snap-1"));
    assert!(got[1].0.ends_with("20261202T060000Z-cccccccc/") && got[1].1.ends_with("/snap-2"));
    assert!(
        results.iter().all(|r| r.kind == EvidenceKind::Disk
            && matches!(r.runner(), crate::model::Runner::EcsTask(_)))
    );
}

#[test]
fn a_task_that_left_no_complete_result_fails_naming_it() {
    let cloud = FakeCloud::with(two_volumes());
    let base = format!("evidence/{CASE}/{ID}");
    stored_result(
        &cloud,
        &format!("{base}/20261202T060000Z-aaaaaaaa"),
        "snap-1",
        "failed",
    );
    let err = block_on(snapshot_results(
        &cloud,
        &test_config(),
        CASE,
        &subject(ID),
        &planned(&["snap-1"]),
        &ran(&["snap-1"]),
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("task/airf/snap-1")
            && err.contains("no complete result")
            && err.contains("snap-1"),
        "{err}"
    );
}

proptest! {
    /// Whatever the case id the controller accepts and the snapshot, the command names exactly
    /// that case, snapshot and instance, and stores under the evidence prefix, once each.
    #[test]
    fn the_command_names_the_case_and_snapshot_it_was_given(
        case in "[A-Za-z0-9][A-Za-z0-9._-]{0,63}",
        snap in "snap-[0-9a-f]{17}",
    ) {
        let config = test_config_with_snapshots();
        let task = config.snapshot.clone().unwrap();
        let f = facts(ID);
        let c = command(&config, &task, &case, &f.target, &snap);
        let after = |flag: &str| c.iter().position(|a| a == flag).and_then(|i| c.get(i + 1)).cloned();
        prop_assert_eq!(c.first().map(String::as_str), Some("snapshot"));
        prop_assert_eq!(c.get(1), Some(&snap));
        prop_assert_eq!(after("--case"), Some(case.clone()));
        prop_assert_eq!(after("--instance"), Some(ID.to_owned()));
        prop_assert_eq!(after("--to"), Some("s3://forensics-evidence/evidence/".to_owned()));
        prop_assert_eq!(c.iter().filter(|a| a.starts_with("--")).count(), 8);
    }
}
