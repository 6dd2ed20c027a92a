//! CreateMultipartUpload without leaving an upload behind.
//!
//! The SDK retries a CreateMultipartUpload whose response was lost, and the retry starts a
//! second upload: the first stays open, invisible to this run, until the bucket's
//! AbortIncompleteMultipartUpload rule removes it days later. So the agent retries Create
//! itself, knows when an attempt may have reached S3, and then lists the uploads of its own key
//! (unique to this run) and aborts every one that is not the upload it uses.

use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::create_multipart_upload::CreateMultipartUploadError;
use aws_sdk_s3::types::{ChecksumAlgorithm, ServerSideEncryption};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use tokio::runtime::Handle;

use super::{S3Target, uri};
use crate::s3_client::describe;
use crate::sink::SinkError;

/// Attempts at CreateMultipartUpload: the budget the SDK has for every other call.
const CREATE_ATTEMPTS: u32 = 5;

/// The upload this run uses.
#[derive(Debug)]
pub struct Created {
    /// Its id.
    pub upload_id: String,
    /// True when an earlier attempt may have started another upload.
    pub after_lost_response: bool,
}

/// Whether a failed attempt may have reached S3 and started an upload. Only a refusal from S3
/// itself (a 4xx other than a timeout) rules that out.
fn may_have_started(err: &SdkError<CreateMultipartUploadError, HttpResponse>) -> bool {
    match err {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            !(400..500).contains(&status) || se.err().code() == Some("RequestTimeout")
        }
        SdkError::ConstructionFailure(_) => false,
        _ => true,
    }
}

/// Whether another attempt can succeed: throttling, server errors and lost connections can;
/// a refusal (no bucket, no permission) cannot.
fn worth_retrying(err: &SdkError<CreateMultipartUploadError, HttpResponse>) -> bool {
    match err {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            status >= 500
                || status == 429
                || matches!(se.err().code(), Some("SlowDown" | "RequestTimeout"))
        }
        SdkError::ConstructionFailure(_) => false,
        _ => true,
    }
}

/// Starts the multipart upload for `target`, retrying as the SDK would but knowing when an
/// attempt may have started an upload whose id never arrived.
pub fn create_upload(
    client: &Client,
    rt: &Handle,
    target: &S3Target,
) -> Result<Created, SinkError> {
    let mut req = client
        .create_multipart_upload()
        .bucket(&target.bucket)
        .key(&target.key)
        .content_type("application/zstd")
        .checksum_algorithm(ChecksumAlgorithm::Sha256);
    if let Some(kms) = &target.sse_kms_key_id {
        req = req
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .ssekms_key_id(kms);
    }
    let mut after_lost_response = false;
    let mut delay = Duration::from_millis(200);
    let mut attempt = 1;
    loop {
        let once = req
            .clone()
            .customize()
            .config_override(aws_sdk_s3::Config::builder().retry_config(RetryConfig::disabled()))
            .send();
        match rt.block_on(once) {
            Ok(out) => {
                let upload_id = out.upload_id.ok_or_else(|| {
                    SinkError::S3(format!(
                        "S3 CreateMultipartUpload on {} returned no upload id",
                        uri(target)
                    ))
                })?;
                return Ok(Created {
                    upload_id,
                    after_lost_response,
                });
            }
            Err(e) => {
                after_lost_response |= may_have_started(&e);
                if attempt >= CREATE_ATTEMPTS || !worth_retrying(&e) {
                    let mut msg = describe("CreateMultipartUpload", &uri(target), &e);
                    if after_lost_response {
                        msg.push_str(&format!(
                            "; an attempt may have started an upload whose answer was lost: list it with `aws s3api list-multipart-uploads --bucket {} --prefix {}` (the bucket's AbortIncompleteMultipartUpload rule removes it)",
                            target.bucket, target.key
                        ));
                    }
                    return Err(SinkError::S3(msg));
                }
                tracing::warn!(
                    "{}; retrying in {delay:?}",
                    describe("CreateMultipartUpload", &uri(target), &e)
                );
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(5));
                attempt += 1;
            }
        }
    }
}

/// Aborts every multipart upload of `target`'s key other than `keep`. Returns what the result
/// should say: what was aborted, or why it could not be checked.
pub fn abort_others(client: &Client, rt: &Handle, target: &S3Target, keep: &str) -> Vec<String> {
    let listed = rt.block_on(
        client
            .list_multipart_uploads()
            .bucket(&target.bucket)
            .prefix(&target.key)
            .send(),
    );
    let uploads = match listed {
        Ok(out) => out,
        Err(e) => {
            return vec![format!(
                "a CreateMultipartUpload answer was lost, so S3 may hold a second, empty upload of {}; it could not be listed ({}): the bucket's AbortIncompleteMultipartUpload rule removes it, or list it with `aws s3api list-multipart-uploads --bucket {} --prefix {}`",
                uri(target),
                describe("ListMultipartUploads", &uri(target), &e),
                target.bucket,
                target.key
            )];
        }
    };
    let mut said = Vec::new();
    for upload in uploads.uploads() {
        let (Some(key), Some(id)) = (upload.key(), upload.upload_id()) else {
            continue;
        };
        if key != target.key || id == keep {
            continue;
        }
        let aborted = rt.block_on(
            client
                .abort_multipart_upload()
                .bucket(&target.bucket)
                .key(key)
                .upload_id(id)
                .send(),
        );
        said.push(match aborted {
            Ok(_) => format!(
                "a CreateMultipartUpload answer was lost and S3 had started upload {id} of {}: aborted it",
                uri(target)
            ),
            Err(e) if e.code() == Some("NoSuchUpload") => continue,
            Err(e) => format!(
                "a CreateMultipartUpload answer was lost and S3 had started upload {id} of {}; aborting it failed ({}): remove it with `aws s3api abort-multipart-upload --bucket {} --key {key} --upload-id {id}`",
                uri(target),
                describe("AbortMultipartUpload", &uri(target), &e),
                target.bucket
            ),
        });
    }
    said
}
