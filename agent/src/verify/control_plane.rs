//! `verify` of a control-plane manifest (`control-plane.manifest.json`, written by the
//! controller's ControlPlane step: what the AWS APIs said about an instance before containment).
//! Every object it lists is read back from beside it and its size and SHA-256 compared; a call
//! the manifest records as refused has no object and is shown as skipped, with AWS's error.
//! Where the manifest was found is compared with the keys it records, unless `--relocated`.

use airf_evidence::control_plane::{ControlPlaneError, ControlPlaneManifest, KIND};
use aws_sdk_s3::Client;
use serde::Deserialize;
use tokio::runtime::Handle;

use super::store::Location;
use super::{Check, Verdict, VerifyOptions, VerifyReport};

/// Whether `bytes` are a control-plane manifest (its `kind`), read before the rest so that
/// image manifests go their own way.
pub fn is_control_plane(bytes: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Kind {
        kind: Option<String>,
    }
    serde_json::from_slice::<Kind>(bytes).is_ok_and(|k| k.kind.as_deref() == Some(KIND))
}

/// Verifies the objects of the control-plane manifest `bytes`, found at `manifest_loc`.
pub fn verify(
    manifest_loc: &Location,
    s3: Option<(&Client, &Handle)>,
    bytes: &[u8],
    opts: &VerifyOptions,
) -> VerifyReport {
    let mut report = VerifyReport::begin(manifest_loc);
    let parsed: Result<_, ControlPlaneError<serde_json::Error>> =
        ControlPlaneManifest::decode(serde_json::from_slice(bytes), || {
            serde_json::from_slice(bytes)
        });
    let manifest = match parsed {
        Ok(m) => m,
        Err(e) => {
            report.message = format!("cannot read the manifest: {e}");
            return report;
        }
    };
    report.image = manifest_loc.sibling("").display();
    if let Location::S3 { key, .. } = manifest_loc {
        let folder = key.rsplit_once('/').map_or("", |(d, _)| d);
        for (o, stored) in manifest.stored() {
            let recorded = stored.key.rsplit_once('/').map_or("", |(d, _)| d);
            let name = format!("location of {}", o.name);
            report.checks.push(if opts.relocated {
                Check::skipped(&name, &stored.key, "--relocated")
            } else {
                Check::compare(&name, recorded, folder)
            });
        }
    }
    let mut unreadable = Vec::new();
    for o in &manifest.objects {
        match (&o.stored, &o.error) {
            (Some(stored), _) => {
                let loc = manifest_loc.sibling(&o.name);
                match super::listing::measure(&loc, s3).map_err(|e| e.to_string()) {
                    Ok((size, sha256)) => {
                        report.checks.push(Check::compare(
                            &format!("{} size", o.name),
                            stored.size,
                            size,
                        ));
                        report.checks.push(Check::compare(
                            &format!("{} sha256", o.name),
                            &stored.sha256,
                            sha256,
                        ));
                    }
                    Err(e) => {
                        report.checks.push(Check::failed(
                            &format!("{} sha256", o.name),
                            &stored.sha256,
                            &e,
                        ));
                        unreadable.push(format!("{}: {e}", o.name));
                    }
                }
            }
            (None, Some(err)) => report.checks.push(Check::skipped(
                &o.name,
                format!("{} {}", o.call.service, o.call.operation),
                format!("not collected: {} ({})", err.code, err.message),
            )),
            (None, None) => {}
        }
    }
    let failed = super::failed_checks(&report.checks);
    let stored = manifest.stored().count();
    if failed.is_empty() {
        report.status = Verdict::Intact;
        report.message = format!(
            "INTACT: the {stored} control-plane objects of {} ({} in {} {}, collected {}) match \
             their manifest",
            manifest.instance_id,
            manifest.case,
            manifest.account,
            manifest.region,
            manifest.started_at
        );
        let refused = manifest.objects.len() - stored;
        if refused > 0 {
            report.message.push_str(&format!(
                "; {refused} calls were refused by AWS and have no object (see the checks)"
            ));
        }
    } else {
        report.status = Verdict::NotIntact;
        report.message = format!(
            "NOT INTACT: control-plane objects of {} differ from their manifest: failed {}",
            manifest.instance_id,
            failed.join(", ")
        );
        if !unreadable.is_empty() {
            report
                .message
                .push_str(&format!("; unreadable: {}", unreadable.join("; ")));
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::Sha256;
    use std::path::Path;

    /// A collection as the controller stores it: two objects and a refused call.
    fn store(dir: &Path) -> std::path::PathBuf {
        let objects = [
            (
                "describe-instances.json",
                b"{\"Reservations\": []}\n".to_vec(),
            ),
            ("console-screenshot.png", b"\x89PNG\r\n\x1a\n....".to_vec()),
        ];
        let mut listed = Vec::new();
        for (name, body) in &objects {
            std::fs::write(dir.join(name), body).unwrap();
            listed.push(serde_json::json!({
                "name": name,
                "call": {"service": "ec2", "operation": "X", "parameters": {}},
                "collected_at": "2026-12-02T17:00:01Z",
                "stored": {"key": format!("ev/IR-1/i-1/control-plane/t/{name}"), "size": body.len(),
                           "sha256": hex::encode(Sha256::digest(body)), "content_type": "application/json"}
            }));
        }
        listed.push(serde_json::json!({
            "name": "flow-logs.json",
            "call": {"service": "ec2", "operation": "DescribeFlowLogs", "parameters": {}},
            "collected_at": "2026-12-02T17:00:02Z",
            "error": {"code": "UnauthorizedOperation", "message": "no"}
        }));
        let mut m: serde_json::Value = serde_json::from_slice(include_bytes!(
            "../../evidence/src/fixtures/control-plane-1.json"
        ))
        .unwrap();
        m["objects"] = listed.into();
        let path = dir.join(airf_evidence::control_plane::MANIFEST_NAME);
        std::fs::write(&path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
        path
    }

    fn run(path: &Path) -> VerifyReport {
        super::super::verify(&Location::File(path.to_owned()), None)
    }

    #[test]
    fn an_untouched_collection_is_intact_and_refused_calls_are_shown() {
        let dir = tempfile::tempdir().unwrap();
        let r = run(&store(dir.path()));
        assert_eq!(r.status, Verdict::Intact, "{}", r.message);
        assert!(
            r.message.contains("2 control-plane objects"),
            "{}",
            r.message
        );
        let skipped = r.checks.iter().find(|c| c.skipped).unwrap();
        assert!(
            skipped.actual.contains("UnauthorizedOperation"),
            "{skipped:?}"
        );
    }

    #[test]
    fn a_changed_or_missing_object_fails_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = store(dir.path());
        // Same size, one byte changed.
        std::fs::write(
            dir.path().join("describe-instances.json"),
            b"{\"Reservations\": [1]\n",
        )
        .unwrap();
        let r = run(&path);
        assert_eq!(r.status, Verdict::NotIntact, "{}", r.message);
        assert!(
            r.message.contains("failed describe-instances.json sha256")
                && !r.message.contains("console-screenshot.png"),
            "{}",
            r.message
        );
        std::fs::remove_file(dir.path().join("console-screenshot.png")).unwrap();
        let r = run(&path);
        assert!(
            r.message.contains("console-screenshot.png sha256")
                && r.message.contains("does not exist"),
            "{}",
            r.message
        );
    }

    #[test]
    fn a_manifest_airf_did_not_write_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = store(dir.path());
        let mut m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        m["objects"][0]["name"] = "../../etc/passwd".into();
        std::fs::write(&path, serde_json::to_vec(&m).unwrap()).unwrap();
        let r = run(&path);
        assert_eq!(r.status, Verdict::Error);
        assert!(r.message.contains("not a plain file name"), "{}", r.message);
    }
}
