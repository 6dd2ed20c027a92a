//! The controller's countersignature: who vouched for this manifest, and about what.
//!
//! Anyone who can write to the evidence bucket can replace an image and its manifest with a
//! consistent pair; only a signature by a key they cannot use tells the two apart. The signature
//! is checked over the statement's exact bytes first, and only a verified statement is parsed
//! and compared: with the manifest bytes actually read, where they were found, the image and raw
//! hashes the manifest records, the case and host, and the signing key.

use airf_evidence::custody::{Countersignature, SIGNING_ALGORITHM, STATEMENT_TYPE, Statement};
use base64::Engine;
use p256::ecdsa::Signature;
use p256::ecdsa::signature::Verifier;
use serde::{Deserialize, Serialize};

use super::Check;
use super::location;
use super::public_key::PublicKey;
use super::store::Location;
use crate::hash::Sha256;
use crate::host::evidence_name;
use crate::manifest::Manifest;

/// What a verified countersignature says, for the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Countersigned {
    /// The signing key (key ARN).
    pub key_id: String,
    /// When the controller verified the evidence, RFC 3339 UTC.
    pub verified_at: String,
    /// The Step Functions execution that verified and signed it.
    pub execution_arn: String,
}

/// What the manifest was checked against.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The manifest's stored bytes, as read.
    pub bytes: &'a [u8],
    /// Parsed.
    pub manifest: &'a Manifest,
    /// Where it was read from (a local path made absolute).
    pub found: &'a Location,
    /// `--relocated`: where it was found is not compared.
    pub relocated: bool,
}

/// The name of the one check that says whether the signature verifies.
pub const SIGNATURE: &str = "signature";

/// Checks the countersignature `stored` (the `.sig.json` bytes) with `key`.
pub fn check(
    stored: &[u8],
    key: &PublicKey,
    subject: Subject<'_>,
) -> (Vec<Check>, Option<Countersigned>) {
    let expected = format!("a valid ECDSA P-256 signature by {}", key.source);
    let fail = |actual: String| (vec![Check::failed(SIGNATURE, &expected, actual)], None);
    let sig: Countersignature = match serde_json::from_slice(stored) {
        Ok(s) => s,
        Err(e) => return fail(format!("not a countersignature: {e}")),
    };
    if sig.algorithm != SIGNING_ALGORITHM {
        return fail(format!(
            "algorithm {}, which this verifier does not accept",
            sig.algorithm
        ));
    }
    let der = match base64::engine::general_purpose::STANDARD.decode(&sig.signature) {
        Ok(d) => d,
        Err(e) => return fail(format!("the signature is not base64: {e}")),
    };
    let signature = match Signature::from_der(&der) {
        Ok(s) => s,
        Err(e) => return fail(format!("not a DER ECDSA signature: {e}")),
    };
    if key
        .key
        .verify(sig.statement.as_bytes(), &signature)
        .is_err()
    {
        return fail(format!(
            "does not verify: the statement was changed, or {} did not sign it (signed by {}, it says)",
            key.source, sig.key_id
        ));
    }
    let mut checks = vec![Check::passed(
        SIGNATURE,
        format!("valid, by {}", key.source),
    )];
    let statement: Statement = match serde_json::from_str(&sig.statement) {
        Ok(s) => s,
        Err(e) => {
            checks.push(Check::failed(
                "statement",
                "an airf countersignature statement",
                format!("signed but unreadable: {e}"),
            ));
            return (checks, None);
        }
    };
    checks.extend(statement_checks(&statement, &sig, subject));
    let info = Countersigned {
        key_id: sig.key_id,
        verified_at: statement.verified_at,
        execution_arn: statement.execution_arn,
    };
    (checks, Some(info))
}

fn s3_uri(bucket: Option<&str>, key: Option<&str>, otherwise: &str) -> String {
    match (bucket, key) {
        (Some(b), Some(k)) => format!("s3://{b}/{k}"),
        _ => otherwise.to_owned(),
    }
}

/// A verified statement against the manifest and where it was found.
fn statement_checks(st: &Statement, sig: &Countersignature, subject: Subject<'_>) -> Vec<Check> {
    let m = subject.manifest;
    let signed_manifest = format!("s3://{}/{}", st.manifest.bucket, st.manifest.key);
    let manifest_place = if subject.relocated {
        Check::skipped(
            "statement: manifest location",
            &signed_manifest,
            format!(
                "not compared (--relocated): read from {}",
                subject.found.display()
            ),
        )
    } else {
        let here = location::names(subject.found, &st.manifest.bucket, &st.manifest.key);
        Check {
            check: "statement: manifest location".into(),
            expected: signed_manifest,
            actual: subject.found.display(),
            ok: here,
            skipped: false,
        }
    };
    vec![
        Check::compare("statement: type", STATEMENT_TYPE, &st.statement_type),
        Check::compare(
            "statement: manifest sha256",
            &st.manifest.sha256,
            hex::encode(Sha256::digest(subject.bytes)),
        ),
        manifest_place,
        Check::compare(
            "statement: image location",
            s3_uri(
                m.image.bucket.as_deref(),
                m.image.key.as_deref(),
                &m.image.location,
            ),
            format!("s3://{}/{}", st.image.bucket, st.image.key),
        ),
        Check::compare(
            "statement: image sha256",
            &m.compressed.sha256,
            &st.image.sha256,
        ),
        Check::compare("statement: image size", m.compressed.size, st.image.size),
        Check::compare("statement: raw sha256", &m.raw.sha256, &st.raw_sha256),
        Check::compare("statement: case", &m.case, &st.case),
        Check::compare("statement: host", evidence_name(&m.host), &st.host),
        Check::compare("statement: key id", &sig.key_id, &st.key_id),
    ]
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use p256::ecdsa::SigningKey;
    use p256::ecdsa::signature::Signer;

    pub(crate) const KEY_ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/k-1";

    pub(crate) fn signing_key(seed: u8) -> SigningKey {
        SigningKey::from_slice(&[seed; 32]).unwrap()
    }

    pub(crate) fn public(seed: u8) -> PublicKey {
        PublicKey {
            key: *signing_key(seed).verifying_key(),
            source: format!("test key {seed}"),
        }
    }

    /// The statement the controller would sign about `manifest_bytes` stored at `bucket`/`key`.
    pub(crate) fn statement_for(
        manifest_bytes: &[u8],
        bucket: &str,
        key: &str,
    ) -> serde_json::Value {
        let m = crate::manifest::parse(manifest_bytes).unwrap();
        serde_json::json!({
            "type": STATEMENT_TYPE,
            "case": m.case,
            "host": evidence_name(&m.host),
            "manifest": {"bucket": bucket, "key": key,
                         "sha256": hex::encode(Sha256::digest(manifest_bytes)),
                         "size": manifest_bytes.len()},
            "image": {"bucket": m.image.bucket, "key": m.image.key,
                      "sha256": m.compressed.sha256, "size": m.compressed.size},
            "raw_sha256": m.raw.sha256,
            "verified_at": "2026-12-02T06:00:00Z",
            "execution_arn": "arn:aws:states:us-east-1:1:execution:airf:e-1",
            "key_id": KEY_ARN,
        })
    }

    /// Signs `statement` as the controller does: the statement text's bytes, DER, base64.
    pub(crate) fn countersign(statement: &str, key: &SigningKey) -> Vec<u8> {
        let sig: Signature = key.sign(statement.as_bytes());
        serde_json::to_vec(&serde_json::json!({
            "statement": statement,
            "algorithm": SIGNING_ALGORITHM,
            "key_id": KEY_ARN,
            "signature": base64::engine::general_purpose::STANDARD.encode(sig.to_der().as_bytes()),
        }))
        .unwrap()
    }

    const BUCKET: &str = "b";
    const MKEY: &str = "IR-1/i-0abc/20261128T153000Z/loop0.manifest.json";

    fn fixture() -> (Vec<u8>, Manifest, Location) {
        let bytes = include_bytes!("../../evidence/src/fixtures/manifest-1-disk.json").to_vec();
        let m = crate::manifest::parse(&bytes).unwrap();
        let found = Location::S3 {
            bucket: BUCKET.into(),
            key: MKEY.into(),
        };
        (bytes, m, found)
    }

    fn run(stored: &[u8], key: &PublicKey, relocated: bool) -> (Vec<Check>, Option<Countersigned>) {
        let (bytes, m, found) = fixture();
        check(
            stored,
            key,
            Subject {
                bytes: &bytes,
                manifest: &m,
                found: &found,
                relocated,
            },
        )
    }

    fn failed(checks: &[Check]) -> Vec<&str> {
        checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| c.check.as_str())
            .collect()
    }

    #[test]
    fn a_valid_countersignature_passes_and_is_reported() {
        let (bytes, ..) = fixture();
        let st = statement_for(&bytes, BUCKET, MKEY).to_string();
        let (checks, info) = run(&countersign(&st, &signing_key(1)), &public(1), false);
        assert!(failed(&checks).is_empty(), "{checks:#?}");
        assert_eq!(checks.len(), 11);
        let info = info.unwrap();
        assert_eq!(info.verified_at, "2026-12-02T06:00:00Z");
        assert!(info.execution_arn.ends_with(":e-1"));
        assert_eq!(info.key_id, KEY_ARN);
    }

    #[test]
    fn another_key_fails() {
        let (bytes, ..) = fixture();
        let st = statement_for(&bytes, BUCKET, MKEY).to_string();
        let (checks, info) = run(&countersign(&st, &signing_key(2)), &public(1), false);
        assert_eq!(failed(&checks), [SIGNATURE]);
        assert!(checks[0].actual.contains("does not verify"));
        assert!(info.is_none());
    }

    #[test]
    fn a_tampered_statement_fails() {
        let (bytes, ..) = fixture();
        let st = statement_for(&bytes, BUCKET, MKEY).to_string();
        let stored = countersign(&st, &signing_key(1));
        let mut sig: serde_json::Value = serde_json::from_slice(&stored).unwrap();
        sig["statement"] = st.replace("IR-1", "IR-2").into();
        let (checks, _) = run(&serde_json::to_vec(&sig).unwrap(), &public(1), false);
        assert_eq!(failed(&checks), [SIGNATURE]);
        // A different algorithm, or a signature that is not DER, is named.
        sig["statement"] = st.into();
        sig["algorithm"] = "RSASSA_PSS_SHA_256".into();
        let (checks, _) = run(&serde_json::to_vec(&sig).unwrap(), &public(1), false);
        assert!(
            checks[0].actual.contains("RSASSA_PSS_SHA_256"),
            "{checks:?}"
        );
        sig["algorithm"] = SIGNING_ALGORITHM.into();
        sig["signature"] = "AAAA".into();
        let (checks, _) = run(&serde_json::to_vec(&sig).unwrap(), &public(1), false);
        assert!(checks[0].actual.contains("DER"), "{checks:?}");
        let (checks, _) = run(b"{}", &public(1), false);
        assert!(
            checks[0].actual.contains("not a countersignature"),
            "{checks:?}"
        );
    }

    #[test]
    fn a_valid_signature_about_another_manifest_fails() {
        let (bytes, ..) = fixture();
        // Signed about other bytes (an earlier manifest that has since been rewritten).
        let mut other = bytes.clone();
        other.extend_from_slice(b"\n");
        let st = statement_for(&other, BUCKET, MKEY).to_string();
        let (checks, _) = run(&countersign(&st, &signing_key(1)), &public(1), false);
        assert_eq!(failed(&checks), ["statement: manifest sha256"]);

        // About the same bytes stored elsewhere (another case's folder).
        let st = statement_for(
            &bytes,
            BUCKET,
            "IR-2/i-0abc/20261128T153000Z/loop0.manifest.json",
        )
        .to_string();
        let (checks, _) = run(&countersign(&st, &signing_key(1)), &public(1), false);
        assert_eq!(failed(&checks), ["statement: manifest location"]);
        // ...which --relocated reports as not compared.
        let (checks, _) = run(&countersign(&st, &signing_key(1)), &public(1), true);
        assert!(failed(&checks).is_empty());
        assert!(
            checks
                .iter()
                .any(|c| c.skipped && c.check == "statement: manifest location")
        );

        // Every other field.
        let base = statement_for(&bytes, BUCKET, MKEY);
        for (field, value, check) in [
            ("/image/sha256", "ff", "statement: image sha256"),
            ("/image/key", "x/y", "statement: image location"),
            ("/raw_sha256", "ff", "statement: raw sha256"),
            ("/case", "IR-2", "statement: case"),
            ("/host", "i-0def", "statement: host"),
            ("/key_id", "arn:aws:kms:other", "statement: key id"),
            ("/type", "airf-countersignature/2", "statement: type"),
        ] {
            let mut st = base.clone();
            *st.pointer_mut(field).unwrap() = value.into();
            let (checks, _) = run(
                &countersign(&st.to_string(), &signing_key(1)),
                &public(1),
                false,
            );
            assert_eq!(failed(&checks), [check], "{field}");
        }
        let mut st = base;
        st["image"]["size"] = 6.into();
        let (checks, _) = run(
            &countersign(&st.to_string(), &signing_key(1)),
            &public(1),
            false,
        );
        assert_eq!(failed(&checks), ["statement: image size"]);
    }
}
