//! S3, in the controller's own account and the evidence region: reading back the manifests the
//! agent stored and the sizes of its images, and writing the countersignatures and custody
//! entries (conditional writes only: an object is never replaced).

use super::{AwsCloud, aws_err, code_of};
use crate::cloud::{MAX_MANIFEST_BYTES, ObjectHead, PutNew, StoredObject};
use crate::error::{Error, Result};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;
use base64::Engine as _;
use sha2::{Digest as _, Sha256};

/// GetObject, refusing objects too large to be a manifest; None: no such key.
pub(super) async fn get_object(
    cloud: &AwsCloud,
    bucket: &str,
    key: &str,
) -> Result<Option<StoredObject>> {
    get_object_up_to(cloud, bucket, key, MAX_MANIFEST_BYTES).await
}

/// GetObject, refusing an object over `max_bytes` before reading its body; None: no such key.
pub(super) async fn get_object_up_to(
    cloud: &AwsCloud,
    bucket: &str,
    key: &str,
    max_bytes: u64,
) -> Result<Option<StoredObject>> {
    let out = match cloud.s3.get_object().bucket(bucket).key(key).send().await {
        Ok(out) => out,
        Err(e) if matches!(code_of(&e), "NoSuchKey" | "NotFound") => return Ok(None),
        Err(e) => return Err(aws_err("s3:GetObject")(e)),
    };
    if let Some(n) = out.content_length().and_then(|n| u64::try_from(n).ok())
        && n > max_bytes
    {
        return Err(Error::failed(format!(
            "s3://{bucket}/{key} is {n} bytes, more than the {max_bytes} such an object can be"
        )));
    }
    let version_id = out.version_id().map(str::to_owned);
    let bytes = out.body.collect().await.map_err(|e| Error::Aws {
        operation: "s3:GetObject",
        message: format!("reading s3://{bucket}/{key}: {e}"),
        retryable: true,
    })?;
    Ok(Some(StoredObject {
        bytes: bytes.to_vec(),
        version_id,
    }))
}

/// HeadObject: size and version; None: no such key (HEAD answers carry no error code, only 404).
pub(super) async fn head_object(
    cloud: &AwsCloud,
    bucket: &str,
    key: &str,
) -> Result<Option<ObjectHead>> {
    match cloud.s3.head_object().bucket(bucket).key(key).send().await {
        Ok(out) => Ok(out
            .content_length()
            .and_then(|n| u64::try_from(n).ok())
            .map(|size| ObjectHead {
                size,
                version_id: out.version_id().map(str::to_owned),
            })),
        Err(e)
            if matches!(code_of(&e), "NoSuchKey" | "NotFound")
                || e.raw_response().is_some_and(|r| r.status().as_u16() == 404) =>
        {
            Ok(None)
        }
        Err(e) => Err(aws_err("s3:HeadObject")(e)),
    }
}

/// PutObject with `If-None-Match: *` and `x-amz-checksum-sha256` (S3 checks the body against
/// it and keeps it with the object, as the agent's uploads do). The evidence bucket's policy
/// denies any other encryption than its own key (DenyOtherEncryption, DenyOtherKmsKeys): the key
/// is named when configured, else the bucket's default applies.
pub(super) async fn put_new_object(
    cloud: &AwsCloud,
    bucket: &str,
    key: &str,
    body: &[u8],
    content_type: &str,
    kms_key_id: &str,
) -> Result<PutNew> {
    let checksum = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(body));
    let mut put = cloud
        .s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .if_none_match("*")
        .content_type(content_type)
        .checksum_sha256(checksum)
        .body(ByteStream::from(body.to_vec()));
    if !kms_key_id.is_empty() {
        put = put
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .ssekms_key_id(kms_key_id);
    }
    match put.send().await {
        Ok(_) => Ok(PutNew::Created),
        Err(e) => {
            let status = e.raw_response().map(|r| r.status().as_u16());
            match (code_of(&e), status) {
                ("PreconditionFailed", _) | (_, Some(412)) => Ok(PutNew::Exists),
                ("ConditionalRequestConflict", _) | (_, Some(409)) => Ok(PutNew::Conflict),
                _ => Err(aws_err("s3:PutObject")(e)),
            }
        }
    }
}

/// ListObjectsV2, every page.
pub(super) async fn list_keys(
    cloud: &AwsCloud,
    bucket: &str,
    prefix: &str,
    start_after: Option<&str>,
) -> Result<Vec<String>> {
    let mut pages = cloud
        .s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .set_start_after(start_after.map(str::to_owned))
        .into_paginator()
        .send();
    let mut keys = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(aws_err("s3:ListBucket"))?;
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
    }
    Ok(keys)
}
