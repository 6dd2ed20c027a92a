//! `verify`: prove that stored evidence is what its manifest says.
//!
//! Streams the image back (from S3 or a file), hashes the stored bytes, decompresses them and
//! hashes the raw stream, and compares sizes and hashes with the manifest. The image is looked
//! up beside the manifest, so a copy moved elsewhere (an analyst's download) verifies too.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::hash::Sha256;
use aws_sdk_s3::Client;
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;

use crate::s3_client::describe;

/// One comparison.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// What was compared.
    pub check: String,
    /// From the manifest.
    pub expected: String,
    /// Measured.
    pub actual: String,
    /// Equal?
    pub ok: bool,
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
    /// One sentence for people.
    pub message: String,
}

/// Where a manifest (and its image) lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// In S3.
    S3 {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
    },
    /// A local file.
    File(PathBuf),
}

impl Location {
    /// Parses `s3://bucket/key` or a path.
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, key) = rest
                .split_once('/')
                .filter(|(b, k)| !b.is_empty() && !k.is_empty())
                .ok_or_else(|| format!("{s:?} is not s3://BUCKET/KEY of a manifest"))?;
            return Ok(Self::S3 {
                bucket: bucket.into(),
                key: key.into(),
            });
        }
        Ok(Self::File(PathBuf::from(s)))
    }

    fn sibling(&self, name: &str) -> Self {
        match self {
            Self::S3 { bucket, key } => {
                let dir = key.rsplit_once('/').map_or("", |(d, _)| d);
                let key = if dir.is_empty() {
                    name.to_owned()
                } else {
                    format!("{dir}/{name}")
                };
                Self::S3 {
                    bucket: bucket.clone(),
                    key,
                }
            }
            Self::File(p) => Self::File(p.parent().unwrap_or(Path::new(".")).join(name)),
        }
    }

    fn display(&self) -> String {
        match self {
            Self::S3 { bucket, key } => format!("s3://{bucket}/{key}"),
            Self::File(p) => p.display().to_string(),
        }
    }
}

/// Reads a whole small object (a manifest).
pub fn read_small(loc: &Location, s3: Option<(&Client, &Handle)>) -> Result<Vec<u8>, String> {
    let mut r = open(loc, s3, None)?;
    let mut v = Vec::new();
    r.read_to_end(&mut v)
        .map_err(|e| format!("reading {} failed: {e}", loc.display()))?;
    Ok(v)
}

fn open(
    loc: &Location,
    s3: Option<(&Client, &Handle)>,
    version: Option<&str>,
) -> Result<Box<dyn Read + Send>, String> {
    match loc {
        Location::File(p) => std::fs::File::open(p)
            .map(|f| Box::new(f) as Box<dyn Read + Send>)
            .map_err(|e| format!("cannot open {}: {e}", p.display())),
        Location::S3 { bucket, key } => {
            let (client, rt) = s3.ok_or("internal: no S3 client")?;
            let out = rt
                .block_on(
                    client
                        .get_object()
                        .bucket(bucket)
                        .key(key)
                        .set_version_id(version.map(str::to_owned))
                        .send(),
                )
                .map_err(|e| describe("GetObject", &loc.display(), &e))?;
            Ok(Box::new(S3Body {
                rt: rt.clone(),
                body: out.body,
                cur: bytes::Bytes::new(),
            }))
        }
    }
}

/// A blocking reader over an S3 response body.
struct S3Body {
    rt: Handle,
    body: aws_sdk_s3::primitives::ByteStream,
    cur: bytes::Bytes,
}

impl Read for S3Body {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rt.block_on(self.body.try_next()) {
                Ok(Some(b)) => self.cur = b,
                Ok(None) => return Ok(0),
                Err(e) => return Err(std::io::Error::other(e)),
            }
        }
        let n = buf.len().min(self.cur.len());
        let head = self.cur.split_to(n);
        buf.get_mut(..n).unwrap_or_default().copy_from_slice(&head);
        Ok(n)
    }
}

/// Counts and hashes what passes through.
struct Tee<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let got = buf.get(..n).unwrap_or_default();
        self.hasher.update(got);
        self.bytes += n as u64;
        Ok(n)
    }
}

fn check(name: &str, expected: impl ToString, actual: impl ToString) -> Check {
    let (expected, actual) = (expected.to_string(), actual.to_string());
    Check {
        check: name.into(),
        ok: expected == actual,
        expected,
        actual,
    }
}

/// Verifies the evidence behind `manifest_loc`.
pub fn verify(manifest_loc: &Location, s3: Option<(&Client, &Handle)>) -> VerifyReport {
    let mut report = VerifyReport {
        status: Verdict::Error,
        manifest: manifest_loc.display(),
        image: String::new(),
        checks: Vec::new(),
        message: String::new(),
    };
    let manifest = match read_small(manifest_loc, s3)
        .and_then(|b| crate::manifest::parse(&b).map_err(|e| e.to_string()))
    {
        Ok(m) => m,
        Err(e) => {
            report.message = format!("cannot read the manifest: {e}");
            return report;
        }
    };
    let image_name = manifest
        .image
        .key
        .as_deref()
        .unwrap_or(&manifest.image.location)
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let image_loc = manifest_loc.sibling(&image_name);
    report.image = image_loc.display();
    // Pin the exact version the manifest recorded when reading the original object.
    let version = match (&image_loc, &manifest.image) {
        (Location::S3 { bucket, key }, img)
            if img.bucket.as_deref() == Some(bucket) && img.key.as_deref() == Some(key) =>
        {
            img.version_id.as_deref()
        }
        _ => None,
    };
    let reader = match open(&image_loc, s3, version) {
        Ok(r) => r,
        Err(e) => {
            report.message = format!("cannot read the image: {e}");
            return report;
        }
    };
    let mut tee = Tee {
        inner: reader,
        hasher: Sha256::new(),
        bytes: 0,
    };
    let mut raw_hasher = Sha256::new();
    let mut raw_bytes = 0u64;
    let mut decode_error = None;
    match zstd::stream::read::Decoder::new(&mut tee) {
        Ok(mut dec) => {
            let mut buf = vec![0u8; 1 << 20];
            loop {
                match dec.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        raw_hasher.update(buf.get(..n).unwrap_or_default());
                        raw_bytes += n as u64;
                    }
                    Err(e) => {
                        decode_error = Some(e.to_string());
                        break;
                    }
                }
            }
        }
        Err(e) => decode_error = Some(e.to_string()),
    }
    // Hash the stored bytes to the end even when decompression stopped early.
    if let Err(e) = std::io::copy(&mut tee, &mut std::io::sink()) {
        report.message = format!("reading the image failed: {e}");
        return report;
    }
    report.checks.push(check(
        "compressed size",
        manifest.compressed.size,
        tee.bytes,
    ));
    report.checks.push(check(
        "compressed sha256",
        &manifest.compressed.sha256,
        hex::encode(tee.hasher.finalize()),
    ));
    report.checks.push(Check {
        check: "zstd decompression".into(),
        expected: "ok".into(),
        ok: decode_error.is_none(),
        actual: decode_error.clone().unwrap_or_else(|| "ok".into()),
    });
    report
        .checks
        .push(check("raw size", manifest.raw.size, raw_bytes));
    report.checks.push(check(
        "raw sha256",
        &manifest.raw.sha256,
        hex::encode(raw_hasher.finalize()),
    ));
    let failed: Vec<&str> = report
        .checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| c.check.as_str())
        .collect();
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
    } else {
        report.status = Verdict::NotIntact;
        report.message = format!(
            "NOT INTACT: {} does not match its manifest: {} differ",
            report.image,
            failed.join(", ")
        );
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_is_found_beside_the_manifest() {
        let m = Location::parse("s3://b/case/host/ts/sda.manifest.json");
        assert_eq!(
            m.map(|m| m.sibling("sda.raw.zst")),
            Ok(Location::S3 {
                bucket: "b".into(),
                key: "case/host/ts/sda.raw.zst".into()
            })
        );
        assert_eq!(
            Location::File("/x/y.json".into()).sibling("a"),
            Location::File("/x/a".into())
        );
        assert!(Location::parse("s3://bucket-only").is_err());
    }

    /// Stores `raw` compressed as `eth0.pcap.zst` beside a manifest from a newer agent of the
    /// same major schema (new fields, kind, status and source type), recording `recorded_raw`
    /// as the raw bytes' SHA-256.
    fn future_evidence(dir: &Path, raw: &[u8], recorded_raw: &[u8]) -> Location {
        let stored = zstd::encode_all(raw, 1).unwrap();
        std::fs::write(dir.join("eth0.pcap.zst"), &stored).unwrap();
        let mut m: serde_json::Value = serde_json::from_slice(include_bytes!(
            "../evidence/src/fixtures/manifest-1-future-minor.json"
        ))
        .unwrap();
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
        let raw: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
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
