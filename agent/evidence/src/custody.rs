//! Custody: the controller's countersignature of each verified manifest, and the per-case log
//! of who acquired, verified, signed and read the evidence.
//!
//! Anyone who can write to the evidence bucket could replace an image and its manifest with a
//! consistent pair, and hashes alone would not notice. After the workflow's Verify step the
//! controller therefore signs a [`Statement`] about each manifest with an asymmetric KMS key of
//! the Security account (no principal of the evidence account can use it) and stores the
//! [`Countersignature`] beside the manifest as `<stem>.manifest.sig.json`. `airf-agent verify
//! --require-signature` checks it against the key's public half.
//!
//! The signed bytes are exactly [`Countersignature::statement`], a JSON text kept as a string, so
//! no canonical form is needed: a verifier checks the signature over those bytes first and only
//! then parses them.
//!
//! The custody log of a case is a chain of [`CustodyEntry`] objects under
//! `<prefix>/<case>/custody/`, named by their sequence number ([`custody_entry_name`]) and written
//! with `If-None-Match: *`, so an entry is never replaced and two writers cannot both take the
//! same number. Each entry records the SHA-256 of the previous entry's stored bytes, so a removed
//! or edited entry breaks the chain.

use serde::{Deserialize, Serialize};

use crate::value::Extra;

/// [`Statement::statement_type`] of this version.
pub const STATEMENT_TYPE: &str = "airf-countersignature/1";

/// The only signing algorithm airf uses: ECDSA on NIST P-256 over SHA-256 (KMS key spec
/// `ECC_NIST_P256`, signing algorithm `ECDSA_SHA_256`, message type `RAW`). The signature is
/// DER-encoded, as KMS returns it.
pub const SIGNING_ALGORITHM: &str = "ECDSA_SHA_256";

/// The name of a manifest's countersignature object: `sda.manifest.json` → `sda.manifest.sig.json`.
pub fn signature_name(manifest_name: &str) -> String {
    match manifest_name.strip_suffix(".json") {
        Some(stem) => format!("{stem}.sig.json"),
        None => format!("{manifest_name}.sig.json"),
    }
}

/// One stored object a statement vouches for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedObject {
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
    /// SHA-256 (lowercase hex) of the object's stored bytes.
    pub sha256: String,
    /// Stored size in bytes.
    pub size: u64,
    /// S3 version id, when the bucket is versioned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
}

/// What the controller signs about one verified manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    /// [`STATEMENT_TYPE`].
    #[serde(rename = "type")]
    pub statement_type: String,
    /// Case id (as in the manifest and the evidence path).
    pub case: String,
    /// The host folder of the evidence path (instance id or hostname).
    pub host: String,
    /// The manifest: its stored bytes' SHA-256 and where it is.
    pub manifest: SignedObject,
    /// The image the manifest describes (its `compressed` SHA-256 and size).
    pub image: SignedObject,
    /// The image's raw stream SHA-256 from the manifest.
    pub raw_sha256: String,
    /// When the controller verified it, RFC 3339 UTC.
    pub verified_at: String,
    /// The Step Functions execution that verified and signed it.
    pub execution_arn: String,
    /// The KMS key that signed (key ARN).
    pub key_id: String,
    /// Fields a newer controller adds.
    #[serde(flatten)]
    pub extra: Extra,
}

/// The stored countersignature: the statement's exact bytes and the signature over them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Countersignature {
    /// The [`Statement`] as JSON text: the signed bytes are this string's UTF-8 bytes.
    pub statement: String,
    /// [`SIGNING_ALGORITHM`].
    pub algorithm: String,
    /// The KMS key that signed (key ARN).
    pub key_id: String,
    /// The signature, base64 of DER.
    pub signature: String,
    /// Fields a newer controller adds.
    #[serde(flatten)]
    pub extra: Extra,
}

/// What happened to the evidence in one custody entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CustodyAction {
    /// An agent stored it (from the agent's result).
    Acquired,
    /// It was checked against its manifest.
    Verified,
    /// The controller countersigned it.
    Signed,
    /// A principal read it.
    Read,
    /// An action a newer writer knows.
    #[serde(other)]
    Unknown,
}

/// One entry of a case's custody log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustodyEntry {
    /// Position in the chain, from 1.
    pub seq: u64,
    /// SHA-256 (lowercase hex) of the stored bytes of entry `seq - 1`; empty for the first.
    pub prev_sha256: String,
    /// Case id.
    pub case: String,
    /// What happened.
    pub action: CustodyAction,
    /// Who did it: the principal ARN (an assumed-role ARN names its session).
    pub actor: String,
    /// When, RFC 3339 UTC.
    pub at: String,
    /// The Step Functions execution, when one did it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_arn: Option<String>,
    /// The objects concerned, as `s3://bucket/key`.
    pub objects: Vec<String>,
    /// Plain words (e.g. which check passed).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// Fields a newer writer adds.
    #[serde(flatten)]
    pub extra: Extra,
}

/// The object name of custody entry `seq` inside `<prefix>/<case>/custody/`: zero-padded so a
/// listing sorts in chain order.
pub fn custody_entry_name(seq: u64) -> String {
    format!("{seq:010}.json")
}

/// The sequence number of a custody entry's object name, if it is one.
pub fn custody_entry_seq(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".json")?;
    if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_sits_beside_the_manifest() {
        assert_eq!(signature_name("sda.manifest.json"), "sda.manifest.sig.json");
        assert_eq!(signature_name("odd"), "odd.sig.json");
    }

    #[test]
    fn custody_names_sort_in_chain_order_and_parse_back() {
        assert_eq!(custody_entry_name(7), "0000000007.json");
        assert!(custody_entry_name(9) < custody_entry_name(10));
        for seq in [1, 42, 9_999_999_999] {
            assert_eq!(custody_entry_seq(&custody_entry_name(seq)), Some(seq));
        }
        for bad in [
            "7.json",
            "00000000x7.json",
            "0000000007",
            "../0000007.json",
            "",
        ] {
            assert_eq!(custody_entry_seq(bad), None, "{bad}");
        }
    }

    #[test]
    fn statements_and_entries_round_trip_and_keep_unknown_fields() {
        let json = r#"{"type":"airf-countersignature/1","case":"IR-1","host":"i-0abc",
            "manifest":{"bucket":"b","key":"e/IR-1/i-0abc/r/sda.manifest.json","sha256":"aa","size":10},
            "image":{"bucket":"b","key":"e/IR-1/i-0abc/r/sda.raw.zst","sha256":"bb","size":20},
            "raw_sha256":"cc","verified_at":"2026-12-02T06:00:00Z",
            "execution_arn":"arn:aws:states:us-east-1:1:execution:x:y","key_id":"arn:aws:kms:k",
            "later":true}"#;
        let s: Statement = serde_json::from_str(json).unwrap();
        assert_eq!(s.statement_type, STATEMENT_TYPE);
        assert!(s.extra.contains_key("later"));
        let back: Statement = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);

        let e: CustodyEntry = serde_json::from_str(
            r#"{"seq":1,"prev_sha256":"","case":"IR-1","action":"sealed","actor":"arn",
                "at":"2026-12-02T06:00:00Z","objects":[]}"#,
        )
        .unwrap();
        assert_eq!(e.action, CustodyAction::Unknown);
    }
}
