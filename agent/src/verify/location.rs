//! Does the manifest describe the object it was found beside?
//!
//! Hashes prove an image matches *a* manifest, not that the pair belongs here: another case's
//! image and manifest copied into this case's folder would verify. So the place the manifest was
//! read from is compared with the place it records: the same bucket and image key in S3, and in
//! every case the `<case>/<host>/<run>/<name>` segments the agent lays evidence out in, with case
//! and host as the manifest names them. A local copy (an analyst's `aws s3 sync`) keeps those
//! segments; one moved out of them is only accepted with `--relocated`, and then reported as not
//! checked.

use super::Check;
use super::store::Location;
use crate::host::{evidence_name, sanitize};
use crate::manifest::{Manifest, SourceFacts};

/// The trailing `[case, host, run, name]` segments of a key or path.
pub fn evidence_tail(path: &str) -> Option<[&str; 4]> {
    let mut it = path.rsplit('/');
    let name = it.next()?;
    let run = it.next()?;
    let host = it.next()?;
    let case = it.next()?;
    let tail = [case, host, run, name];
    tail.iter().all(|s| !s.is_empty()).then_some(tail)
}

/// Where the manifest says its image is: the S3 key, else the local path it was written to.
fn recorded_image(manifest: &Manifest) -> &str {
    manifest
        .image
        .key
        .as_deref()
        .unwrap_or(&manifest.image.location)
}

/// The image's object name, as the manifest records it (its place's last segment).
pub fn image_name(manifest: &Manifest) -> String {
    recorded_image(manifest)
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// `found` is the manifest's location (a local path made absolute by the caller), `image` the
/// image's beside it.
pub fn check(
    found: &Location,
    image: &Location,
    manifest: &Manifest,
    relocated: bool,
) -> Vec<Check> {
    if relocated {
        return vec![Check::skipped(
            "location",
            &manifest.image.location,
            format!("not compared (--relocated): read from {}", image.display()),
        )];
    }
    let mut checks = Vec::new();
    let found_image = match (found, image) {
        (Location::S3 { bucket, .. }, Location::S3 { key, .. }) => {
            checks.push(Check::compare(
                "location: bucket",
                manifest
                    .image
                    .bucket
                    .as_deref()
                    .unwrap_or("none (written to a local directory)"),
                bucket,
            ));
            checks.push(Check::compare(
                "location: image key",
                manifest.image.key.as_deref().unwrap_or("none"),
                key,
            ));
            key.clone()
        }
        _ => {
            let path = image.display();
            let recorded = recorded_image(manifest);
            checks.push(Check::compare(
                "location: path",
                evidence_tail(recorded).map_or_else(
                    || format!("<case>/<host>/<run>/<name> of {recorded}"),
                    |t| t.join("/"),
                ),
                evidence_tail(&path).map_or_else(
                    || format!("{path} (not in a <case>/<host>/<run>/ folder)"),
                    |t| t.join("/"),
                ),
            ));
            path
        }
    };
    let tail = evidence_tail(&found_image);
    checks.push(Check::compare(
        "location: case",
        sanitize(&manifest.case),
        tail.map_or("none", |t| t[0]),
    ));
    checks.push(Check::compare(
        "location: host",
        filed_under(manifest),
        tail.map_or("none", |t| t[1]),
    ));
    checks
}

/// What to tell someone whose location check failed.
pub fn fix(manifest: &Manifest) -> String {
    format!(
        "this manifest describes evidence stored at {} (case {}, host {}), not this copy: evidence of \
         another case or host, or a copy moved out of its <case>/<host>/<run>/ folders; keep those \
         folders (aws s3 sync does), or pass --relocated to verify a moved copy without the \
         location check",
        manifest.image.location,
        manifest.case,
        filed_under(manifest)
    )
}

/// The folder a manifest's evidence is filed under: the instance a snapshot was taken of (the
/// reader runs elsewhere), else the acquired host's own name.
fn filed_under(manifest: &Manifest) -> String {
    match &manifest.source {
        SourceFacts::Snapshot(s) => s
            .instance_id
            .as_deref()
            .map_or_else(|| evidence_name(&manifest.host), sanitize),
        _ => evidence_name(&manifest.host),
    }
}

/// Whether a recorded `bucket`/`key` (e.g. a countersignature's statement about the manifest)
/// names the place `found` was read from; a local copy is compared by its evidence segments.
pub fn names(found: &Location, bucket: &str, key: &str) -> bool {
    match found {
        Location::S3 { bucket: b, key: k } => b == bucket && k == key,
        Location::File(p) => {
            let path = p.display().to_string();
            matches!((evidence_tail(&path), evidence_tail(key)), (Some(a), Some(b)) if a == b)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(bucket: &str, key: &str, case: &str, instance: &str) -> Manifest {
        let mut m: serde_json::Value = serde_json::from_slice(include_bytes!(
            "../../evidence/src/fixtures/manifest-1-disk.json"
        ))
        .unwrap();
        m["image"]["bucket"] = bucket.into();
        m["image"]["key"] = key.into();
        m["image"]["location"] = format!("s3://{bucket}/{key}").into();
        m["case"] = case.into();
        m["host"]["ec2"]["instance_id"] = instance.into();
        serde_json::from_value(m).unwrap()
    }

    fn s3(bucket: &str, key: &str) -> Location {
        Location::S3 {
            bucket: bucket.into(),
            key: key.into(),
        }
    }

    fn failed(checks: &[Check]) -> Vec<&str> {
        checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| c.check.as_str())
            .collect()
    }

    const KEY: &str = "ev/IR-1/i-0abc/20261202T060000Z-3f9a1c2b/sda.raw.zst";
    const MANIFEST: &str = "ev/IR-1/i-0abc/20261202T060000Z-3f9a1c2b/sda.manifest.json";

    fn at(found: Location, m: &Manifest, relocated: bool) -> Vec<Check> {
        let image = found.sibling("sda.raw.zst");
        check(&found, &image, m, relocated)
    }

    #[test]
    fn evidence_where_its_manifest_says_passes() {
        let m = manifest("b", KEY, "IR-1", "i-0abc");
        let checks = at(s3("b", MANIFEST), &m, false);
        assert_eq!(failed(&checks), Vec::<&str>::new(), "{checks:?}");
        assert_eq!(checks.len(), 4);
    }

    #[test]
    fn another_case_copied_here_fails() {
        // IR-2's evidence (its manifest says so) copied into IR-1's folder.
        let other = manifest(
            "b",
            "ev/IR-2/i-0abc/20261202T060000Z-3f9a1c2b/sda.raw.zst",
            "IR-2",
            "i-0abc",
        );
        let checks = at(s3("b", MANIFEST), &other, false);
        assert_eq!(
            failed(&checks),
            ["location: image key", "location: case"],
            "{checks:?}"
        );
    }

    #[test]
    fn another_host_another_bucket_another_run_each_fail() {
        let host = manifest(
            "b",
            "ev/IR-1/i-0def/20261202T060000Z-3f9a1c2b/sda.raw.zst",
            "IR-1",
            "i-0def",
        );
        assert_eq!(
            failed(&at(s3("b", MANIFEST), &host, false)),
            ["location: image key", "location: host"]
        );
        let bucket = manifest("other", KEY, "IR-1", "i-0abc");
        assert_eq!(
            failed(&at(s3("b", MANIFEST), &bucket, false)),
            ["location: bucket"]
        );
        let run = manifest(
            "b",
            "ev/IR-1/i-0abc/20261201T000000Z-00000000/sda.raw.zst",
            "IR-1",
            "i-0abc",
        );
        assert_eq!(
            failed(&at(s3("b", MANIFEST), &run, false)),
            ["location: image key"]
        );
        // A manifest edited to another case, keeping the key: its case disagrees with the path.
        let edited = manifest("b", KEY, "IR-9", "i-0abc");
        assert_eq!(
            failed(&at(s3("b", MANIFEST), &edited, false)),
            ["location: case"]
        );
    }

    #[test]
    fn a_synced_local_copy_passes_and_a_moved_one_needs_relocated() {
        let m = manifest("b", KEY, "IR-1", "i-0abc");
        let synced = Location::File(
            "/cases/dl/ev/IR-1/i-0abc/20261202T060000Z-3f9a1c2b/sda.manifest.json".into(),
        );
        assert!(failed(&at(synced, &m, false)).is_empty());

        let moved = Location::File("/tmp/x/sda.manifest.json".into());
        let checks = at(moved.clone(), &m, false);
        assert_eq!(
            failed(&checks),
            ["location: path", "location: case", "location: host"]
        );
        assert!(
            checks[0]
                .actual
                .contains("not in a <case>/<host>/<run>/ folder")
        );
        assert!(fix(&m).contains("--relocated"));

        let checks = at(moved, &m, true);
        assert_eq!(checks.len(), 1);
        assert!(checks[0].ok && checks[0].skipped, "{checks:?}");
        assert!(checks[0].actual.contains("--relocated"));
    }

    #[test]
    fn a_local_copy_of_another_case_fails() {
        let other = manifest(
            "b",
            "ev/IR-2/i-0abc/20261202T060000Z-3f9a1c2b/sda.raw.zst",
            "IR-2",
            "i-0abc",
        );
        let here = Location::File(
            "/cases/ev/IR-1/i-0abc/20261202T060000Z-3f9a1c2b/sda.manifest.json".into(),
        );
        assert_eq!(
            failed(&at(here, &other, false)),
            ["location: path", "location: case"]
        );
    }

    #[test]
    fn manifests_of_a_local_destination_are_read_by_path() {
        let mut m = manifest("b", KEY, "lab", "i-0abc");
        m.image.bucket = None;
        m.image.key = None;
        m.image.location = "/evidence/lab/i-0abc/20261202T060000Z-3f9a1c2b/sda.raw.zst".into();
        let here =
            Location::File("/copy/lab/i-0abc/20261202T060000Z-3f9a1c2b/sda.manifest.json".into());
        assert!(failed(&at(here, &m, false)).is_empty());
        // Uploaded to S3 afterwards: moved.
        let up = s3(
            "b",
            "lab/i-0abc/20261202T060000Z-3f9a1c2b/sda.manifest.json",
        );
        assert_eq!(
            failed(&at(up, &m, false)),
            ["location: bucket", "location: image key"]
        );
    }

    #[test]
    fn recorded_places_are_matched_to_where_found() {
        assert!(names(&s3("b", MANIFEST), "b", MANIFEST));
        assert!(!names(&s3("b", MANIFEST), "c", MANIFEST));
        let local = Location::File(format!("/dl/{MANIFEST}").into());
        assert!(names(&local, "b", MANIFEST));
        assert!(!names(
            &local,
            "b",
            "ev/IR-2/i-0abc/20261202T060000Z-3f9a1c2b/sda.manifest.json"
        ));
        assert_eq!(evidence_tail("a/b/c"), None);
        assert_eq!(evidence_tail("a//c/d"), None);
    }
}
