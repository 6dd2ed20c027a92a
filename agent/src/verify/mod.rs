//! `verify`: prove that stored evidence is what its manifest says, where it says, and (when the
//! controller countersigned it) who vouched for it.
//!
//! One pass streams the image back (from S3 or a file): it hashes the stored bytes, decodes each
//! zstd frame and hashes the raw stream ([`stream`]). Then the checks, each in its own module:
//! the place the manifest was found against the place it records ([`location`]), sizes and
//! hashes, the seekable format ([`format`]), and the countersignature ([`signature`], with the
//! key from [`public_key`]). The image is looked up beside the manifest, so a downloaded copy
//! verifies too, as long as it keeps its `<case>/<host>/<run>/` folders (or `--relocated` says
//! it was moved, and the location check is reported as skipped). A control-plane manifest (the
//! controller's record of what the AWS APIs said about an instance) has its objects checked
//! instead ([`control_plane`]).

pub mod control_plane;
pub mod format;
pub mod listing;
pub mod location;
pub mod public_key;
pub mod signature;
pub mod store;
pub mod stream;

use aws_sdk_s3::Client;
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;

pub use public_key::PublicKey;
pub use signature::Countersigned;
pub use store::Location;
use store::{ReadError, open, read_small};

/// One comparison.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// What was compared.
    pub check: String,
    /// From the manifest (or what was required).
    pub expected: String,
    /// Measured; for a skipped check, why it was not compared.
    pub actual: String,
    /// False when the check failed; a skipped check did not fail.
    pub ok: bool,
    /// Not compared (`actual` says why): shown, never silent.
    #[serde(default)]
    pub skipped: bool,
}

impl Check {
    /// Passes when `expected` and `actual` read the same.
    pub fn compare(name: &str, expected: impl ToString, actual: impl ToString) -> Self {
        let (expected, actual) = (expected.to_string(), actual.to_string());
        Self {
            check: name.into(),
            ok: expected == actual,
            expected,
            actual,
            skipped: false,
        }
    }

    /// Passed, with what was found.
    pub fn passed(name: &str, found: impl ToString) -> Self {
        let found = found.to_string();
        Self {
            check: name.into(),
            expected: found.clone(),
            actual: found,
            ok: true,
            skipped: false,
        }
    }

    /// Failed.
    pub fn failed(name: &str, expected: impl ToString, actual: impl ToString) -> Self {
        Self {
            check: name.into(),
            expected: expected.to_string(),
            actual: actual.to_string(),
            ok: false,
            skipped: false,
        }
    }

    /// Not compared, and why.
    pub fn skipped(name: &str, expected: impl ToString, why: impl ToString) -> Self {
        Self {
            check: name.into(),
            expected: expected.to_string(),
            actual: why.to_string(),
            ok: true,
            skipped: true,
        }
    }
}

/// Overall verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every check passed.
    Intact,
    /// At least one check failed: the stored evidence differs from its manifest.
    NotIntact,
    /// Verification could not run (missing object, no access).
    Error,
}

/// The result of `verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// Verdict.
    pub status: Verdict,
    /// The manifest checked.
    pub manifest: String,
    /// The image read.
    pub image: String,
    /// Each comparison.
    pub checks: Vec<Check>,
    /// The verified countersignature, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub countersignature: Option<Countersigned>,
    /// One sentence for people.
    pub message: String,
}

impl VerifyReport {
    /// A report on `manifest_loc` that says Error until its checks say otherwise.
    fn begin(manifest_loc: &Location) -> Self {
        Self {
            status: Verdict::Error,
            manifest: manifest_loc.display(),
            image: String::new(),
            checks: Vec::new(),
            countersignature: None,
            message: String::new(),
        }
    }
}

/// The names of the checks that failed.
fn failed_checks(checks: &[Check]) -> Vec<&str> {
    checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| c.check.as_str())
        .collect()
}

/// What `verify` requires beyond the manifest's own checks.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// The copy was moved on purpose: do not compare where it was found (reported as skipped).
    pub relocated: bool,
    /// A valid countersignature must be present (needs `public_key`).
    pub require_signature: bool,
    /// The key countersignatures are checked with.
    pub public_key: Option<PublicKey>,
}

/// Verifies the evidence behind `manifest_loc` with the default options: no signature required,
/// location checked.
pub fn verify(manifest_loc: &Location, s3: Option<(&Client, &Handle)>) -> VerifyReport {
    verify_with(manifest_loc, s3, &VerifyOptions::default())
}

/// What happened to the countersignature check.
enum Signed {
    Verified(Countersigned),
    Missing,
    NotChecked,
    Failed,
}

/// Verifies the evidence behind `manifest_loc`.
pub fn verify_with(
    manifest_loc: &Location,
    s3: Option<(&Client, &Handle)>,
    opts: &VerifyOptions,
) -> VerifyReport {
    let mut report = VerifyReport::begin(manifest_loc);
    let bytes = match read_small(manifest_loc, s3) {
        Ok(b) => b,
        Err(e) => {
            report.message = format!("cannot read the manifest: {e}");
            return report;
        }
    };
    if control_plane::is_control_plane(&bytes) {
        return control_plane::verify(manifest_loc, s3, &bytes, opts);
    }
    // A triage manifest lists several small objects instead of one image.
    if let Some(kind) = listing::listing_kind(&bytes) {
        return match listing::triage_objects(&bytes) {
            Ok(listed) => listing::verify_listed(manifest_loc, s3, kind, &listed),
            Err(e) => {
                report.message = format!("cannot read the manifest: {e}");
                report
            }
        };
    }
    let manifest = match crate::manifest::parse(&bytes) {
        Ok(m) => m,
        Err(e) => {
            report.message = format!("cannot read the manifest: {e}");
            return report;
        }
    };
    let image_name = location::image_name(&manifest);
    let image_loc = manifest_loc.sibling(&image_name);
    report.image = image_loc.display();
    // A local copy is compared by the folders it sits in, so relative paths are made absolute.
    let found = match manifest_loc {
        Location::File(p) => Location::File(std::fs::canonicalize(p).unwrap_or_else(|_| p.clone())),
        s3_loc => s3_loc.clone(),
    };
    report.checks = location::check(
        &found,
        &found.sibling(&image_name),
        &manifest,
        opts.relocated,
    );

    // Pin the exact version the manifest recorded when reading the original object.
    let version = match (&image_loc, &manifest.image) {
        (Location::S3 { bucket, key }, img)
            if img.bucket.as_deref() == Some(bucket) && img.key.as_deref() == Some(key) =>
        {
            img.version_id.as_deref()
        }
        _ => None,
    };
    let facts = match open(&image_loc, s3, version)
        .map_err(|e| e.to_string())
        .and_then(|r| {
            stream::walk(r, format::max_table(&manifest))
                .map_err(|e| format!("reading {} failed: {e}", image_loc.display()))
        }) {
        Ok(f) => f,
        Err(e) => {
            report.message = format!("cannot read the image: {e}");
            return report;
        }
    };
    report.checks.extend([
        Check::compare(
            "compressed size",
            manifest.compressed.size,
            facts.stored_size,
        ),
        Check::compare(
            "compressed sha256",
            &manifest.compressed.sha256,
            &facts.stored_sha256,
        ),
        match &facts.decode_error {
            None => Check::passed("zstd decompression", "ok"),
            Some(e) => Check::failed("zstd decompression", "ok", e),
        },
        Check::compare("raw size", manifest.raw.size, facts.raw_size),
        Check::compare("raw sha256", &manifest.raw.sha256, &facts.raw_sha256),
    ]);
    report.checks.extend(format::check(&manifest, &facts));

    let sig_loc = manifest_loc.sibling(&airf_evidence::custody::signature_name(
        &manifest_loc.name(),
    ));
    let signed = match countersignature(&sig_loc, s3, opts, &bytes, &manifest, &found) {
        Ok((checks, signed)) => {
            report.checks.extend(checks);
            signed
        }
        Err(e) => {
            report.message = format!("cannot read the countersignature: {e}");
            return report;
        }
    };
    let failed = failed_checks(&report.checks);
    if failed.is_empty() {
        report.status = Verdict::Intact;
        report.message = format!(
            "INTACT: {} matches its manifest (raw {} bytes, SHA-256 {})",
            report.image, manifest.raw.size, manifest.raw.sha256
        );
        if manifest.status == crate::manifest::EvidenceStatus::Hollow {
            // Intact bytes, but the manifest itself says they are not the memory they claim.
            report.message.push_str(
                "; but the manifest records the image as HOLLOW: memory was missing when it was made \
                 (see source.content in the manifest), so it is not evidence of the kernel",
            );
        }
        if opts.relocated {
            report
                .message
                .push_str("; where it was found was not checked (--relocated)");
        }
        match &signed {
            Signed::Verified(c) => report.message.push_str(&format!(
                "; countersigned by {} at {} ({})",
                c.key_id, c.verified_at, c.execution_arn
            )),
            Signed::Missing => report.message.push_str(&format!(
                "; unsigned: no countersignature {} beside the manifest",
                sig_loc.display()
            )),
            Signed::NotChecked => report.message.push_str(
                "; a countersignature is present but was not checked: give --public-key FILE.pem or --public-key-kms KEY_ARN",
            ),
            Signed::Failed => {}
        }
        if let Signed::Verified(c) = signed {
            report.countersignature = Some(c);
        }
    } else {
        report.status = Verdict::NotIntact;
        report.message = format!(
            "NOT INTACT: {} does not match its manifest: failed {}",
            report.image,
            failed.join(", ")
        );
        if failed.iter().any(|f| f.starts_with("location")) {
            report.message.push_str("; ");
            report.message.push_str(&location::fix(&manifest));
        }
        if let Some(c) = report
            .checks
            .iter()
            .find(|c| c.check == signature::SIGNATURE && !c.ok)
        {
            report.message.push_str(&format!(
                "; countersignature {}: {}",
                sig_loc.display(),
                c.actual
            ));
        }
    }
    report
}

/// Reads and checks the countersignature beside the manifest. An error means it could not be
/// read while it had to be checked.
fn countersignature(
    sig_loc: &Location,
    s3: Option<(&Client, &Handle)>,
    opts: &VerifyOptions,
    bytes: &[u8],
    manifest: &crate::manifest::Manifest,
    found: &Location,
) -> Result<(Vec<Check>, Signed), ReadError> {
    let name = signature::SIGNATURE;
    let wanted = format!("a countersignature at {}", sig_loc.display());
    let stored = match read_small(sig_loc, s3) {
        Ok(b) => b,
        Err(ReadError::NotFound(_)) if opts.require_signature => {
            return Ok((
                vec![Check::failed(name, wanted, "missing (--require-signature)")],
                Signed::Failed,
            ));
        }
        Err(ReadError::NotFound(_)) => {
            return Ok((
                vec![Check::skipped(name, wanted, "unsigned")],
                Signed::Missing,
            ));
        }
        Err(e) if opts.public_key.is_some() => return Err(e),
        Err(e) => {
            return Ok((
                vec![Check::skipped(name, wanted, format!("not read: {e}"))],
                Signed::NotChecked,
            ));
        }
    };
    let Some(key) = &opts.public_key else {
        return Ok((
            vec![Check::skipped(
                name,
                wanted,
                "present, not checked: no --public-key or --public-key-kms given",
            )],
            Signed::NotChecked,
        ));
    };
    let subject = signature::Subject {
        bytes,
        manifest,
        found,
        relocated: opts.relocated,
    };
    let (checks, info) = signature::check(&stored, key, subject);
    let signed = match info {
        Some(c) if checks.iter().all(|c| c.ok) => Signed::Verified(c),
        _ => Signed::Failed,
    };
    Ok((checks, signed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::Sha256;
    use std::path::{Path, PathBuf};

    const RUN: &str = "20261202T060000Z-3f9a1c2b";

    fn raw(n: usize) -> Vec<u8> {
        (0..n as u32).map(|i| (i % 251) as u8).collect()
    }

    /// Stored evidence as `aws s3 sync` lays it down under `root`: the agent's seekable image
    /// and its manifest in `ev/<case>/<host>/<run>/`. Returns the manifest's path.
    fn store(root: &Path, case: &str, host: &str, raw: &[u8], frame: usize) -> PathBuf {
        let image = stream::tests::seekable(raw, frame);
        let folder = format!("ev/{case}/{host}/{RUN}");
        let dir = root.join(&folder);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("sda.raw.zst"), &image).unwrap();
        let mut m: serde_json::Value = serde_json::from_slice(include_bytes!(
            "../../evidence/src/fixtures/manifest-1-disk.json"
        ))
        .unwrap();
        m["case"] = case.into();
        m["host"]["ec2"]["instance_id"] = host.into();
        m["image"]["bucket"] = "b".into();
        m["image"]["key"] = format!("{folder}/sda.raw.zst").into();
        m["image"]["location"] = format!("s3://b/{folder}/sda.raw.zst").into();
        m["raw"]["size"] = raw.len().into();
        m["raw"]["sha256"] = hex::encode(Sha256::digest(raw)).into();
        m["compressed"]["size"] = image.len().into();
        m["compressed"]["sha256"] = hex::encode(Sha256::digest(&image)).into();
        m["compressed"]["frames"] = raw.len().div_ceil(frame).into();
        m["compressed"]["frame_size"] = frame.into();
        let path = dir.join("sda.manifest.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
        path
    }

    /// Replaces the image beside `manifest` with `image`, and the manifest's stored size and
    /// hash with the new image's: a consistent rewrite that hashes alone accept.
    fn rewrite(manifest: &Path, image: &[u8]) {
        std::fs::write(manifest.with_file_name("sda.raw.zst"), image).unwrap();
        let mut m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(manifest).unwrap()).unwrap();
        m["compressed"]["size"] = image.len().into();
        m["compressed"]["sha256"] = hex::encode(Sha256::digest(image)).into();
        std::fs::write(manifest, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    }

    fn failed(r: &VerifyReport) -> Vec<&str> {
        r.checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| c.check.as_str())
            .collect()
    }

    fn check<'a>(r: &'a VerifyReport, name: &str) -> &'a Check {
        r.checks.iter().find(|c| c.check == name).unwrap()
    }

    fn at(p: &Path) -> Location {
        Location::File(p.to_owned())
    }

    #[test]
    fn a_synced_copy_is_intact_and_reported_unsigned() {
        let root = tempfile::tempdir().unwrap();
        let m = store(root.path(), "IR-1", "i-0abc", &raw(100_000), 16_384);
        let r = verify(&at(&m), None);
        assert_eq!(r.status, Verdict::Intact, "{}", r.message);
        assert!(failed(&r).is_empty(), "{:#?}", r.checks);
        let sig = check(&r, "signature");
        assert!(sig.skipped && sig.actual == "unsigned", "{sig:?}");
        assert!(r.message.contains("unsigned"), "{}", r.message);
        assert!(r.countersignature.is_none());
    }

    #[test]
    fn another_cases_evidence_copied_here_is_not_intact() {
        let root = tempfile::tempdir().unwrap();
        let mine = store(root.path(), "IR-1", "i-0abc", &raw(50_000), 16_384);
        let theirs = store(root.path(), "IR-2", "i-0def", &raw(70_000), 16_384);
        // Their image and manifest, byte for byte, in my folder.
        std::fs::copy(&theirs, &mine).unwrap();
        std::fs::copy(
            theirs.with_file_name("sda.raw.zst"),
            mine.with_file_name("sda.raw.zst"),
        )
        .unwrap();
        let r = verify(&at(&mine), None);
        assert_eq!(r.status, Verdict::NotIntact, "{}", r.message);
        assert_eq!(
            failed(&r),
            ["location: path", "location: case", "location: host"]
        );
        assert!(r.message.contains("--relocated"), "{}", r.message);
    }

    #[test]
    fn a_moved_copy_needs_relocated_and_says_so() {
        let root = tempfile::tempdir().unwrap();
        let orig = store(root.path(), "IR-1", "i-0abc", &raw(50_000), 16_384);
        let flat = root.path().join("flat");
        std::fs::create_dir(&flat).unwrap();
        let moved = flat.join("sda.manifest.json");
        std::fs::rename(&orig, &moved).unwrap();
        std::fs::rename(orig.with_file_name("sda.raw.zst"), flat.join("sda.raw.zst")).unwrap();

        let r = verify(&at(&moved), None);
        assert_eq!(r.status, Verdict::NotIntact, "{}", r.message);
        assert!(
            failed(&r).iter().all(|f| f.starts_with("location")),
            "{r:#?}"
        );

        let opts = VerifyOptions {
            relocated: true,
            ..VerifyOptions::default()
        };
        let r = verify_with(&at(&moved), None, &opts);
        assert_eq!(r.status, Verdict::Intact, "{}", r.message);
        let loc = check(&r, "location");
        assert!(loc.skipped && loc.actual.contains("--relocated"), "{loc:?}");
        assert!(
            r.message.contains("not checked (--relocated)"),
            "{}",
            r.message
        );
    }

    #[test]
    fn a_consistent_single_frame_rewrite_is_not_intact() {
        let root = tempfile::tempdir().unwrap();
        let data = raw(100_000);
        let m = store(root.path(), "IR-1", "i-0abc", &data, 16_384);
        rewrite(&m, &zstd::encode_all(data.as_slice(), 19).unwrap());
        let r = verify(&at(&m), None);
        assert_eq!(r.status, Verdict::NotIntact, "{}", r.message);
        // Sizes and hashes agree: only the format check sees the rewrite.
        assert_eq!(failed(&r), ["seek table", "zstd frames", "frame size"]);

        // A one-frame image: even the frame count agrees; the missing table does not.
        let root = tempfile::tempdir().unwrap();
        let small = raw(10_000);
        let m = store(root.path(), "IR-1", "i-0abc", &small, 16_384);
        rewrite(&m, &zstd::encode_all(small.as_slice(), 19).unwrap());
        let r = verify(&at(&m), None);
        assert_eq!(failed(&r), ["seek table"], "{}", r.message);
    }

    #[test]
    fn a_seek_table_with_the_wrong_frame_size_or_count_is_not_intact() {
        let root = tempfile::tempdir().unwrap();
        let data = raw(100_000);
        let m = store(root.path(), "IR-1", "i-0abc", &data, 16_384);
        let good = std::fs::read(m.with_file_name("sda.raw.zst")).unwrap();
        let table_len = 8 + 7 * 8 + 9;
        let (frames, _) = good.split_at(good.len() - table_len);
        let f = stream::walk(good.as_slice(), 1 << 20).unwrap();

        // Entries that move 1,000 raw bytes from frame 0 to frame 1: sums and count still right.
        let mut t = crate::seekable::SeekTable::default();
        for (i, fr) in f.frames.iter().enumerate() {
            let d = fr.decompressed as usize;
            let d = match i {
                0 => d - 1000,
                1 => d + 1000,
                _ => d,
            };
            t.push(fr.compressed as usize, d).unwrap();
        }
        let mut forged = frames.to_vec();
        forged.extend_from_slice(&t.encode().unwrap());
        rewrite(&m, &forged);
        let r = verify(&at(&m), None);
        assert_eq!(failed(&r), ["seek table vs frames"], "{}", r.message);

        // A table that drops the last frame: the count is wrong, and so are both sums.
        let mut t = crate::seekable::SeekTable::default();
        for fr in &f.frames[..6] {
            t.push(fr.compressed as usize, fr.decompressed as usize)
                .unwrap();
        }
        let mut short = frames.to_vec();
        short.extend_from_slice(&t.encode().unwrap());
        rewrite(&m, &short);
        let r = verify(&at(&m), None);
        assert_eq!(
            failed(&r),
            [
                "seek table entries",
                "seek table stored sum",
                "seek table raw sum"
            ],
            "{}",
            r.message
        );

        // The manifest claims another frame size than the image has.
        rewrite(&m, &good);
        let mut man: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&m).unwrap()).unwrap();
        man["compressed"]["frame_size"] = 8192.into();
        std::fs::write(&m, serde_json::to_vec(&man).unwrap()).unwrap();
        let r = verify(&at(&m), None);
        assert_eq!(failed(&r), ["frame size"], "{}", r.message);
    }

    fn sign_beside(manifest: &Path, seed: u8) {
        let bytes = std::fs::read(manifest).unwrap();
        let key = format!(
            "ev/IR-1/i-0abc/{RUN}/{}",
            manifest.file_name().unwrap().to_string_lossy()
        );
        let st = signature::tests::statement_for(&bytes, "b", &key).to_string();
        std::fs::write(
            manifest.with_file_name("sda.manifest.sig.json"),
            signature::tests::countersign(&st, &signature::tests::signing_key(seed)),
        )
        .unwrap();
    }

    fn with_key(seed: u8, require: bool) -> VerifyOptions {
        VerifyOptions {
            relocated: false,
            require_signature: require,
            public_key: Some(signature::tests::public(seed)),
        }
    }

    #[test]
    fn a_valid_countersignature_is_verified_and_reported() {
        let root = tempfile::tempdir().unwrap();
        let m = store(root.path(), "IR-1", "i-0abc", &raw(20_000), 16_384);
        sign_beside(&m, 1);
        let r = verify_with(&at(&m), None, &with_key(1, true));
        assert_eq!(r.status, Verdict::Intact, "{}", r.message);
        let c = r.countersignature.as_ref().unwrap();
        assert_eq!(c.verified_at, "2026-12-02T06:00:00Z");
        assert!(r.message.contains("countersigned by"), "{}", r.message);
        assert!(
            r.checks
                .iter()
                .any(|c| c.check == "statement: manifest sha256" && c.ok)
        );

        // Without a key the signature is reported, not checked, and not a failure.
        let r = verify(&at(&m), None);
        assert_eq!(r.status, Verdict::Intact);
        assert!(check(&r, "signature").skipped);
        assert!(r.message.contains("not checked"), "{}", r.message);
    }

    #[test]
    fn countersignatures_that_do_not_hold_are_not_intact() {
        let root = tempfile::tempdir().unwrap();
        let m = store(root.path(), "IR-1", "i-0abc", &raw(20_000), 16_384);

        // Missing, but required.
        let r = verify_with(&at(&m), None, &with_key(1, true));
        assert_eq!(r.status, Verdict::NotIntact, "{}", r.message);
        assert_eq!(failed(&r), ["signature"]);
        assert!(r.message.contains("missing"), "{}", r.message);
        // Missing and not required: reported as unsigned.
        let r = verify_with(&at(&m), None, &with_key(1, false));
        assert_eq!(r.status, Verdict::Intact, "{}", r.message);

        // By another key: checked even when not required.
        sign_beside(&m, 2);
        let r = verify_with(&at(&m), None, &with_key(1, false));
        assert_eq!(r.status, Verdict::NotIntact, "{}", r.message);
        assert!(r.message.contains("does not verify"), "{}", r.message);

        // Signed, then the manifest rewritten (here: one more byte of whitespace).
        sign_beside(&m, 1);
        let mut bytes = std::fs::read(&m).unwrap();
        bytes.push(b'\n');
        std::fs::write(&m, bytes).unwrap();
        let r = verify_with(&at(&m), None, &with_key(1, true));
        assert_eq!(failed(&r), ["statement: manifest sha256"], "{}", r.message);
    }

    /// A manifest from a newer agent of the same major schema (new fields, kind, status and
    /// source type) beside its image, recording `recorded_raw` as the raw bytes' SHA-256.
    fn future_evidence(root: &Path, raw: &[u8], recorded_raw: &[u8]) -> Location {
        let dir = root.join(format!("IR-7/i-0abc/{RUN}"));
        std::fs::create_dir_all(&dir).unwrap();
        let stored = stream::tests::seekable(raw, 2 << 20);
        std::fs::write(dir.join("eth0.pcap.zst"), &stored).unwrap();
        let mut m: serde_json::Value = serde_json::from_slice(include_bytes!(
            "../../evidence/src/fixtures/manifest-1-future-minor.json"
        ))
        .unwrap();
        m["image"]["location"] = format!("/evidence/IR-7/i-0abc/{RUN}/eth0.pcap.zst").into();
        m["raw"]["size"] = raw.len().into();
        m["raw"]["sha256"] = hex::encode(Sha256::digest(recorded_raw)).into();
        m["compressed"]["size"] = stored.len().into();
        m["compressed"]["sha256"] = hex::encode(Sha256::digest(&stored)).into();
        let path = dir.join("eth0.manifest.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
        Location::File(path)
    }

    #[test]
    fn evidence_from_a_newer_minor_version_is_verified() {
        let dir = tempfile::tempdir().unwrap();
        let raw = raw(100_000);
        let report = verify(&future_evidence(dir.path(), &raw, &raw), None);
        assert_eq!(report.status, Verdict::Intact, "{}", report.message);
        assert!(report.checks.iter().all(|c| c.ok), "{:?}", report.checks);
        assert!(report.image.ends_with("eth0.pcap.zst"), "{}", report.image);
    }

    #[test]
    fn evidence_from_a_newer_minor_version_is_still_checked() {
        let dir = tempfile::tempdir().unwrap();
        let report = verify(&future_evidence(dir.path(), b"image", b"other"), None);
        assert_eq!(report.status, Verdict::NotIntact, "{}", report.message);
        assert!(report.message.contains("raw sha256"), "{}", report.message);
    }

    #[test]
    fn a_newer_major_version_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.manifest.json");
        std::fs::write(&path, br#"{"schema_version": 2}"#).unwrap();
        let report = verify(&Location::File(path), None);
        assert_eq!(report.status, Verdict::Error);
        assert!(
            report.message.contains("schema version 2")
                && report.message.contains("schema version 1"),
            "{}",
            report.message
        );
    }
}
