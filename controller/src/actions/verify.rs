//! `verify`: reads every manifest the acquisitions reported from the evidence bucket and checks
//! it against the agent's result and the stored image. The images' bytes are not re-read here
//! (gigabytes, and a Lambda has 15 minutes): `airf-agent verify` does that; this step proves
//! every expected artifact exists, is whole and has its hashes recorded before containment.
//!
//! Once every check passed, each manifest is countersigned and the case's custody log records
//! its acquisition, this read, the verification and the signature ([`crate::custody`]).

use crate::cloud::Cloud;
use crate::config::Config;
use crate::custody::{self, Countersigned, CustodyLog, Draft, s3_uri, sha256_hex};
use crate::error::{Error, Result};
use crate::model::{AcquisitionResult, Evidence, NotAcquired, Runner, Subject};
use airf_evidence::EvidenceKind;
use airf_evidence::custody::{CustodyAction, SignedObject};
use airf_evidence::manifest::{Manifest, ManifestError};
use airf_evidence::report::{SourceReport, Status};
use serde::{Deserialize, Serialize};

pub use crate::model::Verified;

/// The verify step's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyOutcome {
    /// Every artifact, checked.
    pub artifacts: Vec<Verified>,
    /// The countersignatures and the custody entries written.
    pub custody: CustodyRecord,
    /// Evidence the workflow could not acquire, and why (memory of a stopped instance, or of one
    /// SSM never reached); empty when everything was acquired.
    pub not_acquired: Vec<NotAcquired>,
}

/// What verify added to the case's custody.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustodyRecord {
    /// `s3://bucket/<prefix>/<case>/custody/`.
    pub log: String,
    /// One per manifest, beside it.
    pub signatures: Vec<Countersigned>,
    /// The custody entries appended, as `s3://bucket/key`, in order.
    pub entries: Vec<String>,
}

/// A manifest that passed [`check`], with what custody needs of it.
#[derive(Debug, Clone)]
struct Passed {
    verified: Verified,
    result: usize,
    bucket: String,
    key: String,
    bytes_sha256: String,
    size: u64,
    version_id: Option<String>,
    image_key: String,
    image_version: Option<String>,
    manifest: Manifest,
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The bucket and key the agent reported for a source's manifest, checked to be in this case's
/// folder of the evidence bucket.
pub fn manifest_location(
    config: &Config,
    case_id: &str,
    subject: &Subject,
    source: &SourceReport,
) -> Result<(String, String), String> {
    let stored = source.manifest.as_ref().ok_or("no manifest reported")?;
    let (Some(bucket), Some(key)) = (&stored.bucket, &stored.key) else {
        return Err(format!("manifest {} is not in S3", stored.location));
    };
    if *bucket != config.evidence_bucket {
        return Err(format!(
            "manifest is in bucket {bucket}, not the evidence bucket {}",
            config.evidence_bucket
        ));
    }
    let prefix = if config.evidence_prefix.is_empty() {
        String::new()
    } else {
        format!("{}/", config.evidence_prefix)
    };
    let folder = format!("{prefix}{case_id}/{}/", subject.target.instance_id);
    if !key.starts_with(&folder) || key.contains("..") {
        return Err(format!(
            "manifest key {key} is outside this case's folder {folder}"
        ));
    }
    Ok((bucket.clone(), key.clone()))
}

/// Reads a manifest (untrusted JSON): a newer agent's of the same major schema version is read,
/// a newer major version is refused naming both versions.
pub fn parse_manifest(
    bytes: &[u8],
) -> std::result::Result<Manifest, ManifestError<serde_json::Error>> {
    Manifest::decode(serde_json::from_slice(bytes), || {
        serde_json::from_slice(bytes)
    })
}

/// Checks one source's manifest (as parsed) and image size against the agent's report.
pub fn check(
    kind: &EvidenceKind,
    case_id: &str,
    source: &SourceReport,
    manifest: &Manifest,
    image_size: Option<u64>,
) -> Result<Verified, String> {
    if manifest.case != case_id {
        return Err(format!(
            "manifest belongs to case {}, not {case_id}",
            manifest.case
        ));
    }
    if manifest.kind != *kind {
        return Err(format!(
            "a {} manifest where {kind} evidence was expected",
            manifest.kind
        ));
    }
    if !is_sha256(&manifest.raw.sha256) || !is_sha256(&manifest.compressed.sha256) {
        return Err("manifest lacks a SHA-256 of the raw stream or of the stored object".into());
    }
    if source.raw_sha256.as_deref() != Some(manifest.raw.sha256.as_str())
        || source.compressed_sha256.as_deref() != Some(manifest.compressed.sha256.as_str())
    {
        return Err("the manifest's hashes differ from the ones the agent reported".into());
    }
    if manifest.raw.size != source.raw_size {
        return Err(format!(
            "manifest says {} raw bytes, the agent reported {}",
            manifest.raw.size, source.raw_size
        ));
    }
    match image_size {
        None => return Err(format!("image {} is missing", manifest.image.location)),
        Some(n) if n != manifest.compressed.size => {
            return Err(format!(
                "image {} is {n} bytes, the manifest says {}",
                manifest.image.location, manifest.compressed.size
            ));
        }
        Some(_) => {}
    }
    Ok(Verified {
        kind: kind.clone(),
        source: source.source.clone(),
        manifest: source
            .manifest
            .as_ref()
            .map(|m| m.location.clone())
            .unwrap_or_default(),
        image: manifest.image.location.clone(),
        raw_size: manifest.raw.size,
        raw_sha256: manifest.raw.sha256.clone(),
        compressed_sha256: manifest.compressed.sha256.clone(),
        unreadable_bytes: manifest.unreadable.total_bytes,
    })
}

/// Verifies every source of every acquisition; any problem fails the step, listing all of them.
/// Memory may be missing with a reason ([`NotAcquired`]); disks never. Then countersigns every
/// manifest and appends the custody log, as execution `execution_arn` at `now` (RFC 3339 UTC).
pub async fn verify<C: Cloud>(
    cloud: &C,
    config: &Config,
    case_id: &str,
    subject: &Subject,
    evidence: &[Evidence],
    execution_arn: &str,
    now: &str,
) -> Result<VerifyOutcome> {
    let results: Vec<AcquisitionResult> = evidence
        .iter()
        .flat_map(|e| e.results().iter().cloned())
        .collect();
    let not_acquired: Vec<NotAcquired> = evidence
        .iter()
        .filter_map(|e| e.not_acquired().cloned())
        .collect();
    let results = results.as_slice();
    let passed = check_all(cloud, config, case_id, subject, results, &not_acquired).await?;
    let custody = record_custody(
        cloud,
        config,
        case_id,
        subject,
        results,
        &passed,
        execution_arn,
        now,
    )
    .await?;
    Ok(VerifyOutcome {
        artifacts: passed.into_iter().map(|p| p.verified).collect(),
        custody,
        not_acquired,
    })
}

async fn check_all<C: Cloud>(
    cloud: &C,
    config: &Config,
    case_id: &str,
    subject: &Subject,
    results: &[AcquisitionResult],
    not_acquired: &[NotAcquired],
) -> Result<Vec<Passed>> {
    let mut problems = Vec::new();
    let mut artifacts = Vec::new();
    for kind in [EvidenceKind::Memory, EvidenceKind::Disk] {
        let sources: Vec<(usize, &SourceReport)> = results
            .iter()
            .enumerate()
            .filter(|(_, r)| r.kind == kind)
            .flat_map(|(i, r)| r.report.sources.iter().map(move |s| (i, s)))
            .collect();
        let skipped = not_acquired.iter().find(|n| n.kind == kind);
        match (sources.is_empty(), skipped) {
            // Memory is gone with a stopped instance, and out of reach without SSM: recorded.
            (true, Some(n)) if kind == EvidenceKind::Memory => {
                tracing::info!(reason = %n.not_acquired, "memory not acquired");
            }
            (true, Some(n)) => problems.push(format!(
                "no {kind} evidence: {} (disks are always acquired, from snapshots at worst)",
                n.not_acquired
            )),
            (true, None) => problems.push(format!("no {kind} evidence was reported")),
            (false, _) => {}
        }
        for (result, source) in sources {
            let label = format!("{kind} {}", source.source);
            if !matches!(
                source.status,
                Status::Complete | Status::CompletedWithReadErrors
            ) {
                problems.push(format!("{label}: {}", source.status));
                continue;
            }
            let (bucket, key) = match manifest_location(config, case_id, subject, source) {
                Ok(loc) => loc,
                Err(why) => {
                    problems.push(format!("{label}: {why}"));
                    continue;
                }
            };
            let Some(stored) = cloud.get_object(&bucket, &key).await? else {
                problems.push(format!("{label}: manifest s3://{bucket}/{key} is missing"));
                continue;
            };
            let manifest = match parse_manifest(&stored.bytes) {
                Ok(m) => m,
                Err(e) => {
                    problems.push(format!("{label}: manifest unreadable: {e}"));
                    continue;
                }
            };
            let image = match (&manifest.image.key, &manifest.image.bucket) {
                (Some(image_key), Some(image_bucket)) if *image_bucket == bucket => cloud
                    .head_object(&bucket, image_key)
                    .await?
                    .map(|head| (image_key.clone(), head)),
                (Some(_), Some(image_bucket)) => {
                    problems.push(format!(
                        "{label}: image is in bucket {image_bucket}, not {bucket}"
                    ));
                    continue;
                }
                _ => None,
            };
            let image_size = image.as_ref().map(|(_, head)| head.size);
            match (check(&kind, case_id, source, &manifest, image_size), image) {
                (Ok(verified), Some((image_key, head))) => artifacts.push(Passed {
                    verified,
                    result,
                    bytes_sha256: sha256_hex(&stored.bytes),
                    size: stored.bytes.len() as u64,
                    version_id: stored.version_id,
                    bucket,
                    key,
                    image_key,
                    image_version: head.version_id,
                    manifest,
                }),
                // check() refuses a missing image.
                (Ok(_), None) => problems.push(format!("{label}: image is missing")),
                (Err(why), _) => problems.push(format!("{label}: {why}")),
            }
        }
    }
    if problems.is_empty() {
        Ok(artifacts)
    } else {
        Err(Error::failed(format!(
            "evidence is not complete: {}",
            problems.join("; ")
        )))
    }
}

/// Countersigns every manifest that passed and appends, for each, `acquired` (by the instance,
/// when the manifest says it finished), `read` and `verified` (by the controller, now) and
/// `signed`.
#[allow(clippy::too_many_arguments)]
async fn record_custody<C: Cloud>(
    cloud: &C,
    config: &Config,
    case_id: &str,
    subject: &Subject,
    results: &[AcquisitionResult],
    passed: &[Passed],
    execution_arn: &str,
    now: &str,
) -> Result<CustodyRecord> {
    let controller = cloud.caller_arn().await?;
    let prefix = custody::custody_prefix(&config.evidence_prefix, case_id);
    let mut log = CustodyLog::new(
        cloud,
        &config.evidence_bucket,
        &prefix,
        case_id,
        &config.kms_key_id,
    );
    let mut record = CustodyRecord {
        log: s3_uri(&config.evidence_bucket, &prefix),
        signatures: Vec::new(),
        entries: Vec::new(),
    };
    let host = subject.target.instance_id.as_str();
    for p in passed {
        let statement = custody::statement(custody::Facts {
            case: case_id,
            host,
            manifest: SignedObject {
                bucket: p.bucket.clone(),
                key: p.key.clone(),
                sha256: p.bytes_sha256.clone(),
                size: p.size,
                version_id: p.version_id.clone(),
            },
            image: SignedObject {
                bucket: p.bucket.clone(),
                key: p.image_key.clone(),
                sha256: p.manifest.compressed.sha256.clone(),
                size: p.manifest.compressed.size,
                version_id: p.image_version.clone(),
            },
            raw_sha256: &p.manifest.raw.sha256,
            verified_at: now,
            execution_arn,
            key_id: &config.signing_key_arn,
        });
        let manifest_uri = s3_uri(&p.bucket, &p.key);
        let image_uri = s3_uri(&p.bucket, &p.image_key);
        let runner = results.get(p.result).map(AcquisitionResult::runner);
        let finished_at = p
            .manifest
            .finished_at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| now.to_owned());
        let entry = |action, actor: &str, at: &str, objects: Vec<String>, detail: String| Draft {
            action,
            actor: actor.to_owned(),
            at: at.to_owned(),
            execution_arn: Some(execution_arn.to_owned()),
            objects,
            detail,
        };
        // The agent on the instance acquired it, or a snapshot task (an ECS task ARN) did.
        let actor = match &runner {
            Some(Runner::EcsTask(arn)) => (*arn).to_owned(),
            _ => subject.target.instance_arn(),
        };
        let acquired = entry(
            CustodyAction::Acquired,
            &actor,
            &finished_at,
            vec![image_uri.clone(), manifest_uri.clone()],
            format!(
                "{} {} {} of {} on host {}, {}; raw SHA-256 {}",
                p.manifest.tool.name,
                p.manifest.tool.version,
                p.manifest.kind,
                p.verified.source,
                p.manifest.host.hostname,
                runner.map_or_else(|| "SSM command -".to_owned(), |r| r.to_string()),
                p.manifest.raw.sha256
            ),
        );
        record.entries.push(log.append(acquired).await?);
        let read = entry(
            CustodyAction::Read,
            &controller,
            now,
            vec![manifest_uri.clone()],
            format!(
                "manifest read: {} bytes, SHA-256 {}, version {}",
                p.size,
                p.bytes_sha256,
                p.version_id.as_deref().unwrap_or("-")
            ),
        );
        record.entries.push(log.append(read).await?);
        let verified = entry(
            CustodyAction::Verified,
            &controller,
            now,
            vec![manifest_uri.clone(), image_uri.clone()],
            format!(
                "case, kind and hashes agree with the agent's result; image is {} bytes as the                  manifest says (its bytes are not re-read: airf-agent verify does that)",
                p.manifest.compressed.size
            ),
        );
        record.entries.push(log.append(verified).await?);
        let signed = custody::countersign(cloud, &statement, &config.kms_key_id).await?;
        let detail = if signed.existing {
            format!(
                "countersignature of manifest SHA-256 {} with {} already stored by an earlier                  attempt; kept",
                p.bytes_sha256, config.signing_key_arn
            )
        } else {
            format!(
                "countersigned manifest SHA-256 {} with {}",
                p.bytes_sha256, config.signing_key_arn
            )
        };
        let entry = entry(
            CustodyAction::Signed,
            &controller,
            now,
            vec![signed.signature.clone(), manifest_uri],
            detail,
        );
        record.entries.push(log.append(entry).await?);
        record.signatures.push(signed);
    }
    record.entries = record
        .entries
        .iter()
        .map(|k| s3_uri(&config.evidence_bucket, k))
        .collect();
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FUTURE: &[u8] =
        include_bytes!("../../../agent/evidence/src/fixtures/manifest-1-future-minor.json");

    fn reported(m: &Manifest) -> SourceReport {
        serde_json::from_value(serde_json::json!({
            "source": "/dev/nvme1n1", "status": "complete",
            "raw_size": m.raw.size, "raw_sha256": m.raw.sha256,
            "compressed_size": m.compressed.size, "compressed_sha256": m.compressed.sha256,
            "unreadable_bytes": 0, "unreadable_ranges": 0,
            "duration_seconds": 1.0, "throughput_mb_s": 1.0,
        }))
        .unwrap()
    }

    /// A newer agent's manifest of the same major version is read and checked, not "unreadable":
    /// a kind this controller does not know is named, and the rest is checked as usual.
    #[test]
    fn a_manifest_from_a_newer_minor_version_is_checked() {
        let m = parse_manifest(FUTURE).unwrap();
        let source = reported(&m);
        let size = Some(m.compressed.size);
        let why = check(&EvidenceKind::Disk, "IR-7", &source, &m, size).unwrap_err();
        assert_eq!(
            why,
            "a network_capture manifest where disk evidence was expected"
        );
        let mut json: serde_json::Value = serde_json::from_slice(FUTURE).unwrap();
        json["kind"] = "disk".into();
        let m = parse_manifest(&serde_json::to_vec(&json).unwrap()).unwrap();
        let v = check(&EvidenceKind::Disk, "IR-7", &source, &m, size).unwrap();
        assert_eq!(v.kind, EvidenceKind::Disk);
        assert_eq!(v.raw_sha256, m.raw.sha256);
    }

    const EXECUTION: &str =
        "arn:aws:states:us-east-1:222222222222:execution:airf-investigation/Instance:0f3c2b1a";

    /// The evidence of one instance as the agent stores it: a memory and a disk manifest and
    /// their images in the fake bucket, and the results the acquisition steps return.
    fn stored_evidence(cloud: &crate::fake::FakeCloud, config: &Config) -> Vec<AcquisitionResult> {
        let bucket = &config.evidence_bucket;
        let mut results = Vec::new();
        for (kind, name) in [("memory", "mem"), ("disk", "nvme1n1")] {
            let folder = "evidence/IR-7/i-0123456789abcdef0/20261202T060000Z-r1";
            let image = vec![7u8; 5];
            let mut json: serde_json::Value = serde_json::from_slice(FUTURE).unwrap();
            json["kind"] = kind.into();
            json["image"] = serde_json::json!({"location": format!("s3://{bucket}/{folder}/{name}.raw.zst"),
                "bucket": bucket, "key": format!("{folder}/{name}.raw.zst")});
            let manifest = serde_json::to_vec_pretty(&json).unwrap();
            let key = format!("{folder}/{name}.manifest.json");
            let mut objects = cloud.lock();
            objects
                .objects
                .insert((bucket.clone(), key.clone()), manifest);
            objects
                .objects
                .insert((bucket.clone(), format!("{folder}/{name}.raw.zst")), image);
            drop(objects);
            let mut source = reported(&parse_manifest(FUTURE).unwrap());
            source.manifest = Some(
                serde_json::from_value(serde_json::json!({
                    "location": format!("s3://{bucket}/{key}"), "bucket": bucket, "key": key}))
                .unwrap(),
            );
            results.push(AcquisitionResult {
                kind: serde_json::from_value(kind.into()).unwrap(),
                command_id: format!("c-{name}"),
                ssm_status: "Success".into(),
                report: serde_json::from_value(serde_json::json!({
                    "command": kind, "status": "complete", "exit_code": 0, "case": "IR-7",
                    "evidence_folder": format!("s3://{bucket}/{folder}/"),
                    "sources": [source], "errors": [], "duration_seconds": 1.0}))
                .unwrap(),
            });
        }
        results
    }

    fn as_evidence(results: Vec<AcquisitionResult>) -> Vec<Evidence> {
        results
            .into_iter()
            .map(|r| Evidence::Acquired(Box::new(r)))
            .collect()
    }

    fn run_verify(cloud: &crate::fake::FakeCloud, evidence: &[Evidence]) -> Result<VerifyOutcome> {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(verify(
                cloud,
                &crate::config::test_config(),
                "IR-7",
                &crate::fake::subject("i-0123456789abcdef0"),
                evidence,
                EXECUTION,
                "2026-12-02T06:10:00Z",
            ))
    }

    /// Memory may be missing with a reason (a stopped instance, or SSM out of reach): the disk
    /// is verified and signed, and the reason is in the outcome. Disks may not be missing.
    #[test]
    fn memory_not_acquired_with_a_reason_is_recorded_not_failed() {
        use crate::fake::FakeCloud;
        let cloud = FakeCloud::default();
        let config = crate::config::test_config();
        let mut results = stored_evidence(&cloud, &config);
        let disk = results.pop().unwrap();
        let reason = NotAcquired {
            kind: EvidenceKind::Memory,
            not_acquired: "the instance is stopped".into(),
        };
        let out = run_verify(
            &cloud,
            &[
                Evidence::NotAcquired(reason.clone()),
                Evidence::Several(vec![disk.clone()]),
            ],
        )
        .unwrap();
        assert_eq!(out.artifacts.len(), 1);
        assert_eq!(out.artifacts[0].kind, EvidenceKind::Disk);
        assert_eq!(out.not_acquired, [reason]);
        assert_eq!(out.custody.signatures.len(), 1);

        // Without the reason, missing memory is a problem, as before.
        let err = run_verify(&cloud, &[Evidence::Several(vec![disk.clone()])]).unwrap_err();
        assert!(
            err.to_string().contains("no memory evidence was reported"),
            "{err}"
        );
        // A disk "not acquired" is refused whatever the reason.
        let memory_result = stored_evidence(&FakeCloud::default(), &config).remove(0);
        let err = run_verify(
            &cloud,
            &[
                Evidence::Acquired(Box::new(memory_result)),
                Evidence::NotAcquired(NotAcquired {
                    kind: EvidenceKind::Disk,
                    not_acquired: "no snapshot".into(),
                }),
            ],
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("no disk evidence: no snapshot"),
            "{err}"
        );
    }

    /// A snapshot task's result: the custody log names the ECS task as the one that acquired.
    #[test]
    fn a_snapshot_tasks_acquisition_is_logged_as_the_tasks() {
        use airf_evidence::custody::{CustodyAction, CustodyEntry};
        let cloud = crate::fake::FakeCloud::default();
        let config = crate::config::test_config();
        let mut results = stored_evidence(&cloud, &config);
        let task = "arn:aws:ecs:us-east-1:222222222222:task/airf/0123456789abcdef";
        results[1].command_id = task.into();
        let out = run_verify(&cloud, &as_evidence(results)).unwrap();
        let s = cloud.lock();
        let acquired: Vec<CustodyEntry> = out
            .custody
            .entries
            .iter()
            .map(|uri| {
                let key = uri
                    .strip_prefix(&format!("s3://{}/", config.evidence_bucket))
                    .unwrap();
                serde_json::from_slice(
                    &s.objects[&(config.evidence_bucket.clone(), key.to_owned())],
                )
                .unwrap()
            })
            .filter(|e: &CustodyEntry| e.action == CustodyAction::Acquired)
            .collect();
        assert_eq!(acquired.len(), 2);
        assert!(
            acquired[0].detail.contains("SSM command c-mem"),
            "{}",
            acquired[0].detail
        );
        assert_eq!(acquired[1].actor, task);
        assert!(
            acquired[1].detail.contains(&format!("ECS task {task}")),
            "{}",
            acquired[1].detail
        );
    }

    /// After the checks: each manifest countersigned beside it with If-None-Match, over a
    /// statement naming the stored manifest's SHA-256 and the execution; the custody log has
    /// acquired, read, verified and signed for each, chained.
    #[test]
    fn verified_manifests_are_countersigned_and_logged() {
        use crate::fake::{CONTROLLER_SESSION, FakeCloud, subject};
        use airf_evidence::custody::{Countersignature, CustodyEntry, Statement};
        let cloud = FakeCloud::default();
        let config = crate::config::test_config();
        let results = stored_evidence(&cloud, &config);
        let out = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(verify(
                &cloud,
                &config,
                "IR-7",
                &subject("i-0123456789abcdef0"),
                &as_evidence(results),
                EXECUTION,
                "2026-12-02T06:10:00Z",
            ))
            .unwrap();
        assert_eq!(out.artifacts.len(), 2);
        assert_eq!(out.custody.signatures.len(), 2);
        assert_eq!(out.custody.entries.len(), 8);
        assert_eq!(
            out.custody.log,
            format!("s3://{}/evidence/IR-7/custody/", config.evidence_bucket)
        );
        let s = cloud.lock();
        for signed in &out.custody.signatures {
            let key = signed
                .signature
                .strip_prefix(&format!("s3://{}/", config.evidence_bucket))
                .unwrap();
            assert!(key.ends_with(".manifest.sig.json"), "{key}");
            assert!(
                s.calls.iter().any(|c| c.starts_with(&format!(
                    "PutObject s3://{}/{key} if-none-match=*",
                    config.evidence_bucket
                ))),
                "{:?}",
                s.calls
            );
            let stored: Countersignature = serde_json::from_slice(
                &s.objects[&(config.evidence_bucket.clone(), key.to_owned())],
            )
            .unwrap();
            let statement: Statement = serde_json::from_str(&stored.statement).unwrap();
            let manifest_key = key.replace(".sig.json", ".json");
            let manifest = &s.objects[&(config.evidence_bucket.clone(), manifest_key.clone())];
            assert_eq!(
                statement.manifest.sha256,
                crate::custody::sha256_hex(manifest)
            );
            assert_eq!(statement.manifest.key, manifest_key);
            assert_eq!(
                statement.manifest.version_id.as_deref(),
                Some(crate::fake::FAKE_VERSION)
            );
            assert_eq!(statement.execution_arn, EXECUTION);
            assert_eq!(statement.key_id, config.signing_key_arn);
            assert_eq!(statement.image.sha256, "1".repeat(64));
            assert_eq!(statement.host, "i-0123456789abcdef0");
            assert!(
                s.signed
                    .iter()
                    .any(|(_, m)| m == stored.statement.as_bytes())
            );
        }
        let mut previous: Option<&Vec<u8>> = None;
        let mut actions = Vec::new();
        for (n, uri) in out.custody.entries.iter().enumerate() {
            let key = uri
                .strip_prefix(&format!("s3://{}/", config.evidence_bucket))
                .unwrap();
            let bytes = &s.objects[&(config.evidence_bucket.clone(), key.to_owned())];
            let e: CustodyEntry = serde_json::from_slice(bytes).unwrap();
            assert_eq!(e.seq, n as u64 + 1);
            assert_eq!(
                e.prev_sha256,
                previous
                    .map(|p| crate::custody::sha256_hex(p))
                    .unwrap_or_default()
            );
            assert_eq!(e.execution_arn.as_deref(), Some(EXECUTION));
            actions.push((e.action.clone(), e.actor.clone()));
            previous = Some(bytes);
        }
        use airf_evidence::custody::CustodyAction::*;
        let instance = "arn:aws:ec2:eu-west-1:111111111111:instance/i-0123456789abcdef0";
        let expected: Vec<_> = [Acquired, Read, Verified, Signed]
            .into_iter()
            .map(|a| {
                let actor = if a == Acquired {
                    instance
                } else {
                    CONTROLLER_SESSION
                };
                (a, actor.to_owned())
            })
            .collect();
        assert_eq!(actions, [expected.clone(), expected].concat());
    }

    /// A check that fails signs nothing and writes no custody entry.
    #[test]
    fn nothing_is_signed_when_a_check_fails() {
        use crate::fake::{FakeCloud, subject};
        let cloud = FakeCloud::default();
        let config = crate::config::test_config();
        let results = stored_evidence(&cloud, &config);
        cloud
            .lock()
            .objects
            .retain(|(_, k), _| !k.ends_with("nvme1n1.raw.zst"));
        let err = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(verify(
                &cloud,
                &config,
                "IR-7",
                &subject("i-0123456789abcdef0"),
                &as_evidence(results),
                EXECUTION,
                "2026-12-02T06:10:00Z",
            ))
            .unwrap_err();
        assert!(err.to_string().contains("is missing"), "{err}");
        let s = cloud.lock();
        assert!(s.signed.is_empty());
        assert!(
            !s.calls.iter().any(|c| c.starts_with("PutObject")),
            "{:?}",
            s.calls
        );
    }

    #[test]
    fn a_newer_major_version_is_refused_naming_both_versions() {
        let e = parse_manifest(br#"{"schema_version":2}"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("schema version 2") && e.contains("schema version 1"),
            "{e}"
        );
    }
}
