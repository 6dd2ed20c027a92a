//! Verifying a manifest that lists several small objects beside it, each with its size and
//! SHA-256 (a triage run's manifest): every object is read back and hashed, and a changed,
//! missing or extra-long one is named.

use std::io::Read;

use aws_sdk_s3::Client;
use tokio::runtime::Handle;

use super::store::{Location, ReadError, open};
use super::{Check, Verdict, VerifyReport};
use crate::hash::Sha256;

/// One listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

/// Size and SHA-256 of one object, streamed (the control-plane check reads its objects so too).
pub fn measure(loc: &Location, s3: Option<(&Client, &Handle)>) -> Result<(u64, String), ReadError> {
    let mut r = open(loc, s3, None)?;
    let mut h = Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                h.update(buf.get(..n).unwrap_or_default());
                size += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(ReadError::Failed(format!(
                    "reading {} failed: {e}",
                    loc.display()
                )));
            }
        }
    }
    Ok((size, hex::encode(h.finalize())))
}

/// Checks every object of `listed` beside `manifest_loc`. `what` names the manifest's kind in
/// the message ("triage").
pub fn verify_listed(
    manifest_loc: &Location,
    s3: Option<(&Client, &Handle)>,
    what: &str,
    listed: &[Listed],
) -> VerifyReport {
    let mut report = VerifyReport::begin(manifest_loc);
    report.image = manifest_loc.sibling("").display();
    for o in listed {
        let loc = manifest_loc.sibling(&o.name);
        match measure(&loc, s3) {
            Ok((size, sha)) => {
                report
                    .checks
                    .push(Check::compare(&format!("{} size", o.name), o.size, size));
                report.checks.push(Check::compare(
                    &format!("{} sha256", o.name),
                    &o.sha256,
                    sha,
                ));
            }
            Err(ReadError::NotFound(_)) => {
                report.checks.push(Check::failed(
                    &format!("{} present", o.name),
                    "present",
                    "missing",
                ));
            }
            Err(e) => {
                report.message = format!("cannot read {}: {e}", loc.display());
                return report;
            }
        }
    }
    let failed = super::failed_checks(&report.checks);
    if failed.is_empty() {
        report.status = Verdict::Intact;
        report.message = format!(
            "INTACT: the {} objects of {what} manifest {} match it",
            listed.len(),
            manifest_loc.display()
        );
    } else {
        report.status = Verdict::NotIntact;
        report.message = format!(
            "NOT INTACT: {what} manifest {}: failed {}",
            manifest_loc.display(),
            failed.join(", ")
        );
    }
    report
}

/// The objects a triage manifest lists.
pub fn triage_objects(bytes: &[u8]) -> Result<Vec<Listed>, String> {
    let m: airf_evidence::triage::TriageManifest =
        serde_json::from_slice(bytes).map_err(|e| format!("not a triage manifest: {e}"))?;
    let m = m.check().map_err(|e| e.to_string())?;
    Ok(m.objects
        .into_iter()
        .map(|o| Listed {
            name: o.name,
            size: o.size,
            sha256: o.sha256,
        })
        .collect())
}

/// The manifest's `kind` when it is a listing kind this module verifies.
pub fn listing_kind(bytes: &[u8]) -> Option<&'static str> {
    #[derive(serde::Deserialize)]
    struct Head {
        kind: Option<String>,
    }
    let head: Head = serde_json::from_slice(bytes).ok()?;
    match head.kind.as_deref() {
        Some("triage") => Some("triage"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_object_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.jsonl"), b"one\n").unwrap();
        std::fs::write(dir.path().join("b.jsonl"), b"two\n").unwrap();
        let listed = |name: &str, body: &[u8]| Listed {
            name: name.into(),
            size: body.len() as u64,
            sha256: hex::encode(Sha256::digest(body)),
        };
        let all = vec![listed("a.jsonl", b"one\n"), listed("b.jsonl", b"two\n")];
        let m = Location::File(dir.path().join("triage.manifest.json"));
        assert_eq!(
            verify_listed(&m, None, "triage", &all).status,
            Verdict::Intact
        );
        std::fs::write(dir.path().join("b.jsonl"), b"TWO\n").unwrap();
        let r = verify_listed(&m, None, "triage", &all);
        assert_eq!(r.status, Verdict::NotIntact);
        assert!(r.message.contains("b.jsonl sha256"), "{}", r.message);
        assert!(!r.message.contains("a.jsonl"), "{}", r.message);
        std::fs::remove_file(dir.path().join("a.jsonl")).unwrap();
        let r = verify_listed(&m, None, "triage", &all);
        assert!(r.message.contains("a.jsonl present"), "{}", r.message);
    }

    #[test]
    fn kinds() {
        assert_eq!(listing_kind(br#"{"kind":"triage"}"#), Some("triage"));
        assert_eq!(listing_kind(br#"{"kind":"memory"}"#), None);
        assert_eq!(listing_kind(b"\xff"), None);
    }
}
