//! S3, in the controller's own account and the evidence region: reading back the manifests the
//! agent stored, and the sizes of its images.

use super::{AwsCloud, aws_err, code_of};
use crate::error::{Error, Result};

/// Manifests are small; anything larger is not one.
const MAX_MANIFEST_BYTES: i64 = 16 * 1024 * 1024;

/// GetObject, refusing objects too large to be a manifest; None: no such key.
pub(super) async fn get_object(
    cloud: &AwsCloud,
    bucket: &str,
    key: &str,
) -> Result<Option<Vec<u8>>> {
    let out = match cloud.s3.get_object().bucket(bucket).key(key).send().await {
        Ok(out) => out,
        Err(e) if matches!(code_of(&e), "NoSuchKey" | "NotFound") => return Ok(None),
        Err(e) => return Err(aws_err("s3:GetObject")(e)),
    };
    if out.content_length().is_some_and(|n| n > MAX_MANIFEST_BYTES) {
        return Err(Error::failed(format!(
            "s3://{bucket}/{key} is larger than a manifest can be"
        )));
    }
    let bytes = out.body.collect().await.map_err(|e| Error::Aws {
        operation: "s3:GetObject",
        message: format!("reading s3://{bucket}/{key}: {e}"),
        retryable: true,
    })?;
    Ok(Some(bytes.to_vec()))
}

/// HeadObject: the object's size; None: no such key (HEAD answers carry no error code, only 404).
pub(super) async fn object_size(cloud: &AwsCloud, bucket: &str, key: &str) -> Result<Option<u64>> {
    match cloud.s3.head_object().bucket(bucket).key(key).send().await {
        Ok(out) => Ok(out.content_length().and_then(|n| u64::try_from(n).ok())),
        Err(e)
            if matches!(code_of(&e), "NoSuchKey" | "NotFound")
                || e.raw_response().is_some_and(|r| r.status().as_u16() == 404) =>
        {
            Ok(None)
        }
        Err(e) => Err(aws_err("s3:HeadObject")(e)),
    }
}
