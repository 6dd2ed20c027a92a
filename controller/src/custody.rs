//! Custody after verification: the controller countersigns each verified manifest with the
//! Security account's asymmetric KMS key and appends the case's custody log
//! (`airf_evidence::custody` is the schema, shared with `airf-agent verify`).
//!
//! Every object is written with `If-None-Match: *`: a countersignature is never replaced, and a
//! custody entry's sequence number is taken by exactly one writer. Concurrent writers of one
//! case (the instances of a fleet verify at about the same time) race for the next number: the
//! loser gets `412 PreconditionFailed`, reads the new tail and tries the next number.

use crate::cloud::{Cloud, PutNew};
use crate::error::{Error, Result};
use airf_evidence::custody::{
    Countersignature, CustodyAction, CustodyEntry, SIGNING_ALGORITHM, STATEMENT_TYPE, SignedObject,
    Statement, custody_entry_name, custody_entry_seq, signature_name,
};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use std::time::Duration;

/// The content type of countersignatures and custody entries.
pub const JSON: &str = "application/json";

/// KMS signs at most 4,096 bytes with MessageType RAW (KMS API reference, Sign, `Message`).
pub const MAX_STATEMENT_BYTES: usize = 4096;

/// Attempts at one custody entry before the step fails as transient (the workflow retries it).
/// Each lost race costs a ListObjectsV2, a GetObject and a PutObject; 32 covers a fleet of
/// dozens of instances appending to one case at the same moment.
pub const MAX_APPEND_ATTEMPTS: u32 = 32;

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `s3://bucket/key`.
pub fn s3_uri(bucket: &str, key: &str) -> String {
    format!("s3://{bucket}/{key}")
}

/// The countersignature's key: beside the manifest, `<stem>.manifest.sig.json`.
pub fn signature_key(manifest_key: &str) -> String {
    match manifest_key.rsplit_once('/') {
        Some((folder, name)) => format!("{folder}/{}", signature_name(name)),
        None => signature_name(manifest_key),
    }
}

/// The custody folder of a case: `<prefix>/<case>/custody/`.
pub fn custody_prefix(evidence_prefix: &str, case_id: &str) -> String {
    if evidence_prefix.is_empty() {
        format!("{case_id}/custody/")
    } else {
        format!("{evidence_prefix}/{case_id}/custody/")
    }
}

/// The signed statement as text, refused when KMS could not sign it whole.
pub fn statement_text(statement: &Statement) -> Result<String> {
    let text = serde_json::to_string(statement)
        .map_err(|e| Error::failed(format!("serializing the countersignature statement: {e}")))?;
    if text.len() > MAX_STATEMENT_BYTES {
        return Err(Error::failed(format!(
            "the countersignature statement for s3://{}/{} is {} bytes; KMS signs at most \
             {MAX_STATEMENT_BYTES} (MessageType RAW): shorten the evidence prefix, case id or key names",
            statement.manifest.bucket,
            statement.manifest.key,
            text.len()
        )));
    }
    Ok(text)
}

/// What the statement about one verified manifest says, before it is signed.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    /// Case id.
    pub case: &'a str,
    /// The host folder of the evidence path.
    pub host: &'a str,
    /// The manifest as read: where, its bytes and version.
    pub manifest: SignedObject,
    /// The image: where, its `compressed` SHA-256 and size, its version.
    pub image: SignedObject,
    /// The raw stream's SHA-256 from the manifest.
    pub raw_sha256: &'a str,
    /// Now, RFC 3339 UTC.
    pub verified_at: &'a str,
    /// The Step Functions execution.
    pub execution_arn: &'a str,
    /// The signing key (ARN).
    pub key_id: &'a str,
}

/// The statement of [`Facts`].
pub fn statement(f: Facts<'_>) -> Statement {
    Statement {
        statement_type: STATEMENT_TYPE.into(),
        case: f.case.into(),
        host: f.host.into(),
        manifest: f.manifest,
        image: f.image,
        raw_sha256: f.raw_sha256.into(),
        verified_at: f.verified_at.into(),
        execution_arn: f.execution_arn.into(),
        key_id: f.key_id.into(),
        extra: Default::default(),
    }
}

/// A stored countersignature.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Countersigned {
    /// `s3://bucket/key` of the countersignature.
    pub signature: String,
    /// `s3://bucket/key` of the manifest it is about.
    pub manifest: String,
    /// True when an earlier attempt of the step had stored it already (same manifest bytes).
    pub existing: bool,
}

/// Signs `statement` and stores the countersignature beside the manifest. A countersignature
/// already there is kept: accepted when it is about the same manifest bytes (a retried step),
/// else the step fails naming it.
pub async fn countersign<C: Cloud>(
    cloud: &C,
    statement: &Statement,
    kms_key_id: &str,
) -> Result<Countersigned> {
    let text = statement_text(statement)?;
    let bucket = &statement.manifest.bucket;
    let key = signature_key(&statement.manifest.key);
    let signed = cloud.sign(&statement.key_id, text.as_bytes()).await?;
    let stored = Countersignature {
        statement: text,
        algorithm: SIGNING_ALGORITHM.into(),
        key_id: signed.key_id,
        signature: base64::engine::general_purpose::STANDARD.encode(&signed.der),
        extra: Default::default(),
    };
    let body = serde_json::to_vec_pretty(&stored)
        .map_err(|e| Error::failed(format!("serializing the countersignature: {e}")))?;
    let done = |existing| Countersigned {
        signature: s3_uri(bucket, &key),
        manifest: s3_uri(bucket, &statement.manifest.key),
        existing,
    };
    match cloud
        .put_new_object(bucket, &key, &body, JSON, kms_key_id)
        .await?
    {
        PutNew::Created => Ok(done(false)),
        PutNew::Conflict => Err(Error::Aws {
            operation: "s3:PutObject",
            message: format!(
                "s3://{bucket}/{key}: another write of this countersignature was in flight (409)"
            ),
            retryable: true,
        }),
        PutNew::Exists => {
            let earlier = cloud
                .get_object(bucket, &key)
                .await?
                .ok_or_else(|| Error::Aws {
                    operation: "s3:GetObject",
                    message: format!("s3://{bucket}/{key} exists (412) but cannot be read yet"),
                    retryable: true,
                })?;
            let about = serde_json::from_slice::<Countersignature>(&earlier.bytes)
                .ok()
                .and_then(|c| serde_json::from_str::<Statement>(&c.statement).ok());
            match about {
                Some(s)
                    if s.manifest.sha256 == statement.manifest.sha256
                        && s.manifest.key == statement.manifest.key
                        && s.manifest.bucket == statement.manifest.bucket =>
                {
                    Ok(done(true))
                }
                Some(s) => Err(Error::failed(format!(
                    "s3://{bucket}/{key} already holds a countersignature of another manifest \
                     (SHA-256 {}, execution {}) than the one verified now (SHA-256 {}): the manifest \
                     changed after it was signed; a signature is never replaced",
                    s.manifest.sha256, s.execution_arn, statement.manifest.sha256
                ))),
                None => Err(Error::failed(format!(
                    "s3://{bucket}/{key} exists and is not a countersignature airf can read; a \
                     signature is never replaced"
                ))),
            }
        }
    }
}

/// One custody entry to append; the log fills in its number and the previous entry's hash.
#[derive(Debug, Clone)]
pub struct Draft {
    /// What happened.
    pub action: CustodyAction,
    /// Who did it (principal ARN).
    pub actor: String,
    /// When, RFC 3339 UTC.
    pub at: String,
    /// The execution.
    pub execution_arn: Option<String>,
    /// The objects, as `s3://bucket/key`.
    pub objects: Vec<String>,
    /// Plain words.
    pub detail: String,
}

/// The last entry of the chain as this writer knows it.
#[derive(Debug, Clone)]
struct Tail {
    seq: u64,
    sha256: String,
    key: Option<String>,
}

/// A case's custody log, appended by one writer that may race others.
#[derive(Debug)]
pub struct CustodyLog<'a, C> {
    cloud: &'a C,
    bucket: String,
    prefix: String,
    case_id: String,
    kms_key_id: String,
    tail: Option<Tail>,
    /// The last key this writer knows to exist: a new listing starts after it.
    seen: Option<String>,
    /// First back-off after a lost race, doubled up to [`MAX_PAUSE`].
    pause: Duration,
}

/// The longest back-off between two attempts.
const MAX_PAUSE: Duration = Duration::from_secs(1);

impl<'a, C: Cloud> CustodyLog<'a, C> {
    /// The log of `case_id` under `prefix` (`<evidence prefix>/<case>/custody/`) in `bucket`.
    pub fn new(cloud: &'a C, bucket: &str, prefix: &str, case_id: &str, kms_key_id: &str) -> Self {
        CustodyLog {
            cloud,
            bucket: bucket.into(),
            prefix: prefix.into(),
            case_id: case_id.into(),
            kms_key_id: kms_key_id.into(),
            tail: None,
            seen: None,
            pause: Duration::from_millis(20),
        }
    }

    /// No back-off between attempts (tests, where no other writer runs meanwhile).
    #[cfg(test)]
    pub fn without_pauses(mut self) -> Self {
        self.pause = Duration::ZERO;
        self
    }

    /// The chain's last entry: the highest-numbered one listed, hashed as stored; None when it
    /// vanished between listing and reading.
    async fn read_tail(&mut self) -> Result<Option<Tail>> {
        let mut newest = self.newest_listed().await?;
        if newest.is_none() && self.seen.take().is_some() {
            // Nothing after the entry this writer last saw: the race was lost to a write that
            // did not happen after all (409). That entry is still the tail: list it again.
            newest = self.newest_listed().await?;
        }
        let Some((seq, key)) = newest else {
            return Ok(Some(Tail {
                seq: 0,
                sha256: String::new(),
                key: None,
            }));
        };
        // Gone between the listing and the read (it never is: entries are not deleted, and
        // Object Lock keeps them): try again from a new listing.
        let Some(entry) = self.cloud.get_object(&self.bucket, &key).await? else {
            return Ok(None);
        };
        Ok(Some(Tail {
            seq,
            sha256: sha256_hex(&entry.bytes),
            key: Some(key),
        }))
    }

    /// The highest-numbered entry listed after `seen` (entries up to it are known to be older).
    async fn newest_listed(&self) -> Result<Option<(u64, String)>> {
        let keys = self
            .cloud
            .list_keys(&self.bucket, &self.prefix, self.seen.as_deref())
            .await?;
        Ok(keys
            .into_iter()
            .filter_map(|k| Some((custody_entry_seq(k.strip_prefix(&self.prefix)?)?, k)))
            .max_by_key(|(seq, _)| *seq))
    }

    /// Appends one entry; returns its key.
    pub async fn append(&mut self, draft: Draft) -> Result<String> {
        for attempt in 0..MAX_APPEND_ATTEMPTS {
            let tail = match self.tail.take() {
                Some(t) => t,
                None => match self.read_tail().await? {
                    Some(t) => t,
                    None => {
                        backoff(self.pause, attempt).await;
                        continue;
                    }
                },
            };
            let seq = tail.seq + 1;
            let entry = CustodyEntry {
                seq,
                prev_sha256: tail.sha256.clone(),
                case: self.case_id.clone(),
                action: draft.action.clone(),
                actor: draft.actor.clone(),
                at: draft.at.clone(),
                execution_arn: draft.execution_arn.clone(),
                objects: draft.objects.clone(),
                detail: draft.detail.clone(),
                extra: Default::default(),
            };
            let bytes = serde_json::to_vec(&entry)
                .map_err(|e| Error::failed(format!("serializing a custody entry: {e}")))?;
            let key = format!("{}{}", self.prefix, custody_entry_name(seq));
            match self
                .cloud
                .put_new_object(&self.bucket, &key, &bytes, JSON, &self.kms_key_id)
                .await?
            {
                PutNew::Created => {
                    self.tail = Some(Tail {
                        seq,
                        sha256: sha256_hex(&bytes),
                        key: Some(key.clone()),
                    });
                    self.seen = Some(key.clone());
                    return Ok(key);
                }
                // Another writer took `seq`: the next listing starts after the old tail.
                PutNew::Exists | PutNew::Conflict => {
                    self.seen = tail.key;
                    backoff(self.pause, attempt).await;
                }
            }
        }
        Err(Error::Aws {
            operation: "s3:PutObject",
            message: format!(
                "custody log s3://{}/{}: every one of {MAX_APPEND_ATTEMPTS} attempts lost the race \
                 for the next entry to another writer",
                self.bucket, self.prefix
            ),
            retryable: true,
        })
    }
}

/// Waits before the next attempt: `first` doubled per attempt up to [`MAX_PAUSE`], the second
/// half spread by the clock's nanoseconds so racing writers do not retry in step.
async fn backoff(first: Duration, attempt: u32) {
    let ceiling = first.saturating_mul(1 << attempt.min(10)).min(MAX_PAUSE);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let spread = ceiling / 2 * (nanos % 1000) / 1000;
    tokio::time::sleep(ceiling / 2 + spread).await;
}

#[cfg(test)]
mod tests;
