//! KMS, in the controller's own (Security) account: the countersignature of verified manifests.

use super::{AwsCloud, aws_err};
use crate::cloud::KmsSignature;
use crate::error::{Error, Result};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{MessageType, SigningAlgorithmSpec};

/// Sign: ECDSA over SHA-256 of `message`, which KMS hashes itself (MessageType RAW).
pub(super) async fn sign(cloud: &AwsCloud, key_id: &str, message: &[u8]) -> Result<KmsSignature> {
    let out = cloud
        .kms
        .sign()
        .key_id(key_id)
        .message(Blob::new(message))
        .message_type(MessageType::Raw)
        .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
        .send()
        .await
        .map_err(aws_err("kms:Sign"))?;
    let der = out
        .signature()
        .map(|b| b.as_ref().to_vec())
        .filter(|b| !b.is_empty())
        .ok_or_else(|| Error::failed(format!("kms:Sign with {key_id} returned no signature")))?;
    Ok(KmsSignature {
        key_id: out.key_id().unwrap_or(key_id).to_owned(),
        der,
    })
}
