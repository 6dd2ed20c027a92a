//! `snapshot_plan` and `snapshot_results`: disks imaged from EBS snapshots, with nothing run on
//! the instance.
//!
//! The agent on the instance needs SSM. A stopped instance has no SSM, and one whose SSM Agent
//! never registers (not installed, no route to the endpoints, waiting out its 25-30 minute
//! back-off) would otherwise end the investigation in Error with its disks never imaged. EBS
//! snapshots need neither: `airf-agent snapshot` reads their blocks through the EBS direct APIs
//! (a SHA-256 per block) from a Fargate task in the Security account, with the member account's
//! reader role, and stores the same evidence as `disk` (manifest kind `disk`, source
//! `snapshot`), so `verify` checks it unchanged. A responder can also ask for this path on
//! purpose: the instance tag `airf:disk-source=snapshot` (read by `prepare`).
//!
//! `snapshot_plan` takes (or reuses) one snapshot per attached volume, tagged with the case,
//! and answers, per volume, what the workflow's `ecs:runTask.sync` needs: cluster, task
//! definition, network and the agent's command line. One task per volume: the volumes of a
//! large instance are read at once, each within its own GetSnapshotBlock quota.
//!
//! `snapshot_results` runs after the tasks: a task's output carries no stdout, so the agent's
//! result is read from the copy it stores in its evidence folder (`result.json`), with the
//! controller's own read access to the evidence bucket.

use crate::cloud::Cloud;
use crate::config::{Config, SNAPSHOT_CONTAINER, SnapshotTask};
use crate::error::{Error, Result};
use crate::model::{
    AcquisitionResult, CASE_TAG, Evidence, INSTANCE_TAG, InstanceFacts, MANAGED_TAG, MEMORY_TAG,
    SnapshotPlan, SnapshotRun, Subject, Target, TaskRun, Volume, partition, tag_value,
};
use crate::notify::notify;
use airf_evidence::EvidenceKind;
use airf_evidence::report::{RESULT_OBJECT, RunReport, SourceReport, Status};
use std::collections::BTreeMap;

/// Per volume: the case's snapshot of it, if one was taken already.
pub fn snapshots_to_use<'a>(
    facts: &'a InstanceFacts,
    case_snapshots: &[(String, String)],
) -> Result<Vec<(&'a Volume, Option<String>)>, String> {
    if facts.volumes.is_empty() {
        return Err(format!(
            "{} has no EBS volume attached: there is no disk to image from a snapshot (instance-store \
             volumes have no snapshots; their data is lost when the instance stops)",
            facts.target.instance_id
        ));
    }
    Ok(facts
        .volumes
        .iter()
        .map(|v| {
            let taken = case_snapshots
                .iter()
                .find(|(volume, _)| *volume == v.id)
                .map(|(_, snapshot)| snapshot.clone());
            (v, taken)
        })
        .collect())
}

/// `s3://<bucket>/<prefix>/` (or `s3://<bucket>/` without a prefix): where the agent stores.
pub fn destination(config: &Config) -> String {
    let prefix = config.evidence_prefix.trim_matches('/');
    if prefix.is_empty() {
        format!("s3://{}/", config.evidence_bucket)
    } else {
        format!("s3://{}/{prefix}/", config.evidence_bucket)
    }
}

/// The ARN of the member account's reader role the agent assumes.
pub fn reader_role_arn(task: &SnapshotTask, target: &Target) -> String {
    format!(
        "arn:{}:iam::{}:role/{}",
        partition(&target.region),
        target.account,
        task.reader_role_name
    )
}

/// The agent's command line (without the program) for one snapshot: the same evidence options
/// the SSM documents give `disk` (bucket region, SSE-KMS key, endpoint), and the reader role and
/// region of the snapshot.
pub fn command(
    config: &Config,
    task: &SnapshotTask,
    case_id: &str,
    target: &Target,
    snapshot_id: &str,
) -> Vec<String> {
    let mut c: Vec<String> = [
        "snapshot",
        snapshot_id,
        "--to",
        &destination(config),
        "--case",
        case_id,
        "--instance",
        &target.instance_id,
        "--role-arn",
        &reader_role_arn(task, target),
        "--snapshot-region",
        &target.region,
        "--region",
        &config.evidence_region,
        "--json",
        "--no-progress",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    if !config.kms_key_id.is_empty() {
        c.extend(["--sse-kms-key-id".to_owned(), config.kms_key_id.clone()]);
    }
    if !config.agent_endpoint_url.is_empty() {
        c.extend([
            "--endpoint-url".to_owned(),
            config.agent_endpoint_url.clone(),
        ]);
    }
    c
}

/// The snapshot task, or why this deployment has none.
pub fn deployed(config: &Config) -> Result<&SnapshotTask> {
    config.snapshot.as_ref().ok_or_else(|| {
        Error::Config(
            "the snapshot task is not deployed (AIRF_SNAPSHOT_CLUSTER_ARN, AIRF_SNAPSHOT_TASK_DEFINITION_ARN, \
             AIRF_SNAPSHOT_SUBNET_IDS and AIRF_SNAPSHOT_SECURITY_GROUP_ID are empty): disks can only be \
             imaged by the agent on the instance, through SSM"
                .into(),
        )
    })
}

/// Takes the missing snapshots, records why memory was not acquired (when it was not), notifies,
/// and answers the tasks to run.
pub async fn snapshot_plan<C: Cloud>(
    cloud: &C,
    config: &Config,
    case_id: &str,
    subject: &Subject,
    memory: &Evidence,
) -> Result<SnapshotPlan> {
    let task = deployed(config)?;
    let target = &subject.target;
    let facts = super::instance(cloud, target).await?;
    let existing = cloud.case_snapshots(target, case_id).await?;
    let chosen = snapshots_to_use(&facts, &existing).map_err(Error::failed)?;
    let tags = BTreeMap::from([
        (CASE_TAG.to_owned(), case_id.to_owned()),
        (MANAGED_TAG.to_owned(), "true".to_owned()),
        (INSTANCE_TAG.to_owned(), target.instance_id.clone()),
    ]);
    let mut tasks = Vec::new();
    for (volume, taken) in chosen {
        let (snapshot_id, reused) = match taken {
            Some(id) => (id, true),
            None => {
                let description = format!("airf {case_id} {} {}", target.instance_id, volume.id);
                (
                    cloud
                        .snapshot(target, &volume.id, &description, &tags)
                        .await?,
                    false,
                )
            }
        };
        tasks.push(SnapshotRun {
            command: command(config, task, case_id, target, &snapshot_id),
            volume_id: volume.id.clone(),
            device: volume.device.clone(),
            snapshot_id,
            reused,
            cluster: task.cluster_arn.clone(),
            task_definition: task.task_definition_arn.clone(),
            container: SNAPSHOT_CONTAINER.to_owned(),
            subnets: task.subnet_ids.clone(),
            security_groups: vec![task.security_group_id.clone()],
        });
    }
    let memory_note = match memory.not_acquired() {
        Some(skipped) => {
            let tags = BTreeMap::from([(
                MEMORY_TAG.to_owned(),
                tag_value(&format!("not acquired: {}", skipped.not_acquired)),
            )]);
            cloud.tag_instance(target, &tags).await?;
            format!("Memory was NOT acquired: {}.", skipped.not_acquired)
        }
        None => "Memory was acquired by the agent on the instance.".to_owned(),
    };
    let volumes: Vec<String> = tasks
        .iter()
        .map(|t| {
            format!(
                "{} ({} {}, {})",
                t.snapshot_id,
                t.volume_id,
                t.device,
                if t.reused {
                    "taken before"
                } else {
                    "taken now"
                }
            )
        })
        .collect();
    notify(
        cloud,
        config,
        case_id,
        target,
        "disks from EBS snapshots",
        &format!(
            "{memory_note}\nDisks are imaged from EBS snapshots tagged {CASE_TAG}={case_id}, one Fargate task each \
             (airf-agent snapshot, reading through the EBS direct APIs as {}): {}.\nEvidence goes to {}{case_id}/{}/; \
             then verification and containment.",
            reader_role_arn(task, target),
            volumes.join(", "),
            destination(config),
            target.instance_id
        ),
    )
    .await?;
    Ok(SnapshotPlan { tasks })
}

/// Whether `source` of a snapshot run is the image of `snapshot_id`: the agent names the source
/// after the snapshot, and its objects `<snap-id>.raw.zst` and `<snap-id>.manifest.json`.
fn is_source_of(source: &SourceReport, snapshot_id: &str) -> bool {
    let manifest_name = format!("{snapshot_id}.manifest.json");
    source.source == snapshot_id
        || source
            .manifest
            .as_ref()
            .and_then(|m| m.key.as_deref())
            .is_some_and(|k| k.rsplit('/').next() == Some(manifest_name.as_str()))
}

/// The latest complete run of `airf-agent snapshot` that imaged `snapshot_id`, among the
/// results found: folders are named `<UTC start>-<run id>`, so the greatest is the latest.
pub fn latest_run<'a>(reports: &'a [RunReport], snapshot_id: &str) -> Option<&'a RunReport> {
    reports
        .iter()
        .filter(|r| r.command == "snapshot")
        .filter(|r| {
            r.sources.iter().any(|s| {
                is_source_of(s, snapshot_id)
                    && matches!(s.status, Status::Complete | Status::CompletedWithReadErrors)
            })
        })
        .max_by(|a, b| a.evidence_folder.cmp(&b.evidence_folder))
}

/// Reads the agents' results of the tasks that ran, one per snapshot: the acquisition results
/// `verify` checks. A task that exited 0 without a complete result of its snapshot fails the
/// step, naming the task.
pub async fn snapshot_results<C: Cloud>(
    cloud: &C,
    config: &Config,
    case_id: &str,
    subject: &Subject,
    plan: &SnapshotPlan,
    tasks: &[TaskRun],
) -> Result<Vec<AcquisitionResult>> {
    let prefix = config.evidence_prefix.trim_matches('/');
    let folder = if prefix.is_empty() {
        format!("{case_id}/{}/", subject.target.instance_id)
    } else {
        format!("{prefix}/{case_id}/{}/", subject.target.instance_id)
    };
    let bucket = &config.evidence_bucket;
    let mut reports = Vec::new();
    for key in cloud.list_keys(bucket, &folder, None).await? {
        if !key.ends_with(&format!("/{RESULT_OBJECT}")) {
            continue;
        }
        let Some(object) = cloud.get_object(bucket, &key).await? else {
            continue;
        };
        // Another command's result (memory, disk) or a newer agent's: not one of these runs.
        if let Ok(report) = serde_json::from_slice::<RunReport>(&object.bytes)
            && report.case == case_id
        {
            reports.push(report);
        }
    }
    let mut results: Vec<AcquisitionResult> = Vec::new();
    for planned in &plan.tasks {
        let task = tasks
            .iter()
            .find(|t| t.snapshot_id == planned.snapshot_id)
            .ok_or_else(|| {
                Error::failed(format!(
                    "no task ran for snapshot {} of {}",
                    planned.snapshot_id, planned.volume_id
                ))
            })?;
        let report = latest_run(&reports, &planned.snapshot_id).ok_or_else(|| {
            Error::failed(format!(
                "ECS task {} exited 0, yet s3://{bucket}/{folder} holds no complete result of airf-agent \
                 snapshot {} ({}): see the task's log",
                task.task_arn, planned.snapshot_id, planned.volume_id
            ))
        })?;
        // One run may have imaged several snapshots: its result is verified once.
        if results
            .iter()
            .any(|r| r.report.evidence_folder == report.evidence_folder)
        {
            continue;
        }
        results.push(AcquisitionResult {
            kind: EvidenceKind::Disk,
            command_id: task.task_arn.clone(),
            ssm_status: "ECS task exited 0".to_owned(),
            report: report.clone(),
        });
    }
    Ok(results)
}

#[cfg(test)]
mod tests;
