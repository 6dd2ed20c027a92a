//! `verify`: reads every manifest the acquisitions reported from the evidence bucket and checks
//! it against the agent's result and the stored image. The images' bytes are not re-read here
//! (gigabytes, and a Lambda has 15 minutes): `airf-agent verify` does that; this step proves
//! every expected artifact exists, is whole and has its hashes recorded before containment.

use crate::cloud::Cloud;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::model::{AcquisitionResult, Subject};
use airf_evidence::EvidenceKind;
use airf_evidence::manifest::{Manifest, ManifestError};
use airf_evidence::report::{SourceReport, Status};
use serde::{Deserialize, Serialize};

/// One verified artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verified {
    /// Memory or disk.
    pub kind: EvidenceKind,
    /// What was read (device, `/proc/kcore`, …).
    pub source: String,
    /// `s3://bucket/key` of the manifest.
    pub manifest: String,
    /// `s3://bucket/key` of the image.
    pub image: String,
    /// Raw bytes and their SHA-256.
    pub raw_size: u64,
    /// SHA-256 of the raw stream.
    pub raw_sha256: String,
    /// SHA-256 of the stored object.
    pub compressed_sha256: String,
    /// Zero-filled unreadable bytes.
    pub unreadable_bytes: u64,
}

/// The verify step's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyOutcome {
    /// Every artifact, checked.
    pub artifacts: Vec<Verified>,
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
pub async fn verify<C: Cloud>(
    cloud: &C,
    config: &Config,
    case_id: &str,
    subject: &Subject,
    results: &[AcquisitionResult],
) -> Result<VerifyOutcome> {
    let mut problems = Vec::new();
    let mut artifacts = Vec::new();
    for kind in [EvidenceKind::Memory, EvidenceKind::Disk] {
        let sources: Vec<&SourceReport> = results
            .iter()
            .filter(|r| r.kind == kind)
            .flat_map(|r| &r.report.sources)
            .collect();
        if sources.is_empty() {
            problems.push(format!("no {kind} evidence was reported"));
        }
        for source in sources {
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
            let Some(bytes) = cloud.get_object(&bucket, &key).await? else {
                problems.push(format!("{label}: manifest s3://{bucket}/{key} is missing"));
                continue;
            };
            let manifest = match parse_manifest(&bytes) {
                Ok(m) => m,
                Err(e) => {
                    problems.push(format!("{label}: manifest unreadable: {e}"));
                    continue;
                }
            };
            let image_size = match (&manifest.image.key, &manifest.image.bucket) {
                (Some(image_key), Some(image_bucket)) if *image_bucket == bucket => {
                    cloud.object_size(&bucket, image_key).await?
                }
                (Some(_), Some(image_bucket)) => {
                    problems.push(format!(
                        "{label}: image is in bucket {image_bucket}, not {bucket}"
                    ));
                    continue;
                }
                _ => None,
            };
            match check(&kind, case_id, source, &manifest, image_size) {
                Ok(v) => artifacts.push(v),
                Err(why) => problems.push(format!("{label}: {why}")),
            }
        }
    }
    if problems.is_empty() {
        Ok(VerifyOutcome { artifacts })
    } else {
        Err(Error::failed(format!(
            "evidence is not complete: {}",
            problems.join("; ")
        )))
    }
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
