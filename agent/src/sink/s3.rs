//! S3 multipart upload with bounded memory and per-part SHA-256 checksums.
//!
//! The pipeline's assembler thread calls [`ImageSink::write`]; full parts are handed to tokio
//! tasks, at most `concurrency` at a time (a semaphore: when all are busy, `write` waits, which
//! backs the whole pipeline up to the reader). Each part carries `x-amz-checksum-sha256`, and
//! CompleteMultipartUpload lists them, so S3 rejects any part that changed in flight. On abort,
//! in-flight parts are cancelled and AbortMultipartUpload is retried until it sticks or a
//! deadline passes, in which case the exact clean-up command is reported.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, ServerSideEncryption,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::{Bytes, BytesMut};
use tokio::runtime::Handle;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::{AbortReport, ImageSink, SinkError, StoredObject};
use crate::hash::Sha256;
use crate::s3_client::{describe, error_code};

/// Where and how to upload one object.
#[derive(Debug, Clone)]
pub struct S3Target {
    /// Bucket.
    pub bucket: String,
    /// Object key.
    pub key: String,
    /// Bytes per part (all but the last).
    pub part_size: u64,
    /// Parts in flight at once.
    pub concurrency: usize,
    /// SSE-KMS key; otherwise the bucket's default encryption applies.
    pub sse_kms_key_id: Option<String>,
    /// How long to keep retrying AbortMultipartUpload when the server is unreachable.
    pub abort_deadline: Duration,
}

/// An open multipart upload.
#[derive(Debug)]
pub struct S3Sink {
    client: Client,
    rt: Handle,
    target: S3Target,
    upload_id: String,
    buf: BytesMut,
    spare: Arc<std::sync::Mutex<Vec<BytesMut>>>,
    next_part: i32,
    in_flight: Vec<JoinHandle<Result<CompletedPart, SinkError>>>,
    done: Vec<CompletedPart>,
    permits: Arc<Semaphore>,
}

fn uri(t: &S3Target) -> String {
    format!("s3://{}/{}", t.bucket, t.key)
}

impl S3Sink {
    /// Starts the multipart upload, so a wrong bucket or missing permission fails before any
    /// evidence is read.
    pub fn create(client: Client, rt: Handle, target: S3Target) -> Result<Self, SinkError> {
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
        let out = rt
            .block_on(req.send())
            .map_err(|e| SinkError::S3(describe("CreateMultipartUpload", &uri(&target), &e)))?;
        let upload_id = out.upload_id.ok_or_else(|| {
            SinkError::S3(format!(
                "S3 CreateMultipartUpload on {} returned no upload id",
                uri(&target)
            ))
        })?;
        let permits = Arc::new(Semaphore::new(target.concurrency.max(1)));
        Ok(Self {
            client,
            rt,
            buf: BytesMut::with_capacity(usize::try_from(target.part_size).unwrap_or(usize::MAX)),
            spare: Arc::default(),
            target,
            upload_id,
            next_part: 1,
            in_flight: Vec::new(),
            done: Vec::new(),
            permits,
        })
    }

    /// The upload id (for reports and clean-up).
    pub fn upload_id(&self) -> &str {
        &self.upload_id
    }

    /// Collects parts that have finished, surfacing the first failure.
    fn reap(&mut self, wait_all: bool) -> Result<(), SinkError> {
        let mut still = Vec::with_capacity(self.in_flight.len());
        for handle in std::mem::take(&mut self.in_flight) {
            if wait_all || handle.is_finished() {
                let part = self
                    .rt
                    .block_on(handle)
                    .map_err(|e| SinkError::S3(format!("S3 part upload task failed: {e}")))??;
                self.done.push(part);
            } else {
                still.push(handle);
            }
        }
        self.in_flight = still;
        Ok(())
    }

    fn send_part(&mut self) -> Result<(), SinkError> {
        self.reap(false)?;
        let permit = self
            .rt
            .block_on(Arc::clone(&self.permits).acquire_owned())
            .map_err(|e| SinkError::S3(format!("upload slots closed: {e}")))?;
        // Part buffers are reused once their upload is done, so memory holds steady at
        // (concurrency + 1) parts instead of churning the allocator.
        let cap = usize::try_from(self.target.part_size).unwrap_or(usize::MAX);
        let next = self
            .spare
            .lock()
            .ok()
            .and_then(|mut s| s.pop())
            .unwrap_or_else(|| BytesMut::with_capacity(cap));
        let body: Bytes = std::mem::replace(&mut self.buf, next).freeze();
        let spare = Arc::clone(&self.spare);
        let part_number = self.next_part;
        self.next_part += 1;
        let client = self.client.clone();
        let (bucket, key, upload_id) = (
            self.target.bucket.clone(),
            self.target.key.clone(),
            self.upload_id.clone(),
        );
        let target = uri(&self.target);
        self.in_flight.push(self.rt.spawn(async move {
            let _permit = permit;
            let (checksum, body) =
                tokio::task::spawn_blocking(move || (B64.encode(Sha256::digest(&body)), body))
                    .await
                    .map_err(|e| {
                        SinkError::S3(format!("hashing part {part_number} failed: {e}"))
                    })?;
            let keep = body.clone();
            let out = client
                .upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(part_number)
                .checksum_sha256(&checksum)
                .body(ByteStream::from(body))
                .customize()
                .disable_payload_signing()
                .send()
                .await
                .map_err(|e| {
                    SinkError::S3(describe(&format!("UploadPart {part_number}"), &target, &e))
                })?;
            if let Ok(mut reusable) = keep.try_into_mut() {
                reusable.clear();
                if let Ok(mut s) = spare.lock() {
                    s.push(reusable);
                }
            }
            Ok(CompletedPart::builder()
                .part_number(part_number)
                .set_e_tag(out.e_tag)
                .checksum_sha256(out.checksum_sha256.unwrap_or(checksum))
                .build())
        }));
        Ok(())
    }
}

impl ImageSink for S3Sink {
    fn write(&mut self, mut data: &[u8]) -> Result<(), SinkError> {
        let part = usize::try_from(self.target.part_size).unwrap_or(usize::MAX);
        while !data.is_empty() {
            let take = (part - self.buf.len()).min(data.len());
            let (head, rest) = data.split_at(take);
            self.buf.extend_from_slice(head);
            data = rest;
            if self.buf.len() >= part {
                self.send_part()?;
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<StoredObject, SinkError> {
        if !self.buf.is_empty() || self.next_part == 1 {
            self.send_part()?;
        }
        self.reap(true)?;
        self.done.sort_by_key(|p| p.part_number);
        let parts = self.done.len();
        let upload = CompletedMultipartUpload::builder()
            .set_parts(Some(self.done.clone()))
            .build();
        let out = self
            .rt
            .block_on(
                self.client
                    .complete_multipart_upload()
                    .bucket(&self.target.bucket)
                    .key(&self.target.key)
                    .upload_id(&self.upload_id)
                    .multipart_upload(upload)
                    .send(),
            )
            .map_err(|e| {
                SinkError::S3(describe("CompleteMultipartUpload", &uri(&self.target), &e))
            })?;
        // S3's composite checksum: SHA-256 over the concatenated binary part checksums.
        let composite = {
            let mut h = Sha256::new();
            for p in &self.done {
                if let Some(c) = p.checksum_sha256().and_then(|c| B64.decode(c).ok()) {
                    h.update(c);
                }
            }
            format!("{}-{parts}", B64.encode(h.finalize()))
        };
        self.upload_id.clear();
        Ok(StoredObject {
            location: uri(&self.target),
            bucket: Some(self.target.bucket.clone()),
            key: Some(self.target.key.clone()),
            etag: out.e_tag,
            version_id: out.version_id,
            parts: u32::try_from(parts).ok(),
            part_size: Some(self.target.part_size),
            checksum_sha256: Some(out.checksum_sha256.unwrap_or(composite)),
        })
    }

    fn abort(&mut self) -> AbortReport {
        for h in &self.in_flight {
            h.abort();
        }
        for h in std::mem::take(&mut self.in_flight) {
            let _ = self.rt.block_on(h);
        }
        if self.upload_id.is_empty() {
            return AbortReport {
                clean: true,
                detail: "no upload in progress".into(),
            };
        }
        let deadline = Instant::now() + self.target.abort_deadline;
        let mut delay = Duration::from_millis(500);
        loop {
            let res = self.rt.block_on(
                self.client
                    .abort_multipart_upload()
                    .bucket(&self.target.bucket)
                    .key(&self.target.key)
                    .upload_id(&self.upload_id)
                    .send(),
            );
            match res {
                Ok(_) => {
                    return AbortReport {
                        clean: true,
                        detail: format!(
                            "aborted multipart upload {} of {}",
                            self.upload_id,
                            uri(&self.target)
                        ),
                    };
                }
                Err(e) if error_code(&e).as_deref() == Some("NoSuchUpload") => {
                    return AbortReport {
                        clean: true,
                        detail: format!("multipart upload {} is already gone", self.upload_id),
                    };
                }
                Err(e) if Instant::now() + delay > deadline => {
                    return AbortReport {
                        clean: false,
                        detail: format!(
                            "{}; the partial upload is still there: remove it with `aws s3api abort-multipart-upload --bucket {} --key {} --upload-id {}` (a bucket lifecycle rule AbortIncompleteMultipartUpload also removes it)",
                            describe("AbortMultipartUpload", &uri(&self.target), &e),
                            self.target.bucket,
                            self.target.key,
                            self.upload_id
                        ),
                    };
                }
                Err(e) => {
                    tracing::warn!(
                        "{}; retrying in {delay:?}",
                        describe("AbortMultipartUpload", &uri(&self.target), &e)
                    );
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

/// Uploads a small object (a manifest or artifact) in one request with its SHA-256 checksum.
pub fn put_small(
    client: &Client,
    rt: &Handle,
    bucket: &str,
    key: &str,
    body: Vec<u8>,
    content_type: &str,
    sse_kms_key_id: Option<&str>,
) -> Result<StoredObject, SinkError> {
    let checksum = B64.encode(Sha256::digest(&body));
    let mut req = client
        .put_object()
        .bucket(bucket)
        .key(key)
        .content_type(content_type)
        .checksum_sha256(&checksum)
        .body(ByteStream::from(body));
    if let Some(kms) = sse_kms_key_id {
        req = req
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .ssekms_key_id(kms);
    }
    let target = format!("s3://{bucket}/{key}");
    let out = rt
        .block_on(req.send())
        .map_err(|e| SinkError::S3(describe("PutObject", &target, &e)))?;
    Ok(StoredObject {
        location: target,
        bucket: Some(bucket.to_owned()),
        key: Some(key.to_owned()),
        etag: out.e_tag,
        version_id: out.version_id,
        checksum_sha256: Some(checksum),
        ..StoredObject::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::config::retry::RetryConfig;
    use aws_sdk_s3::operation::abort_multipart_upload::AbortMultipartUploadOutput;
    use aws_sdk_s3::operation::complete_multipart_upload::CompleteMultipartUploadOutput;
    use aws_sdk_s3::operation::create_multipart_upload::{
        CreateMultipartUploadError, CreateMultipartUploadOutput,
    };
    use aws_sdk_s3::operation::upload_part::{UploadPartError, UploadPartOutput};
    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    use aws_smithy_types::error::ErrorMetadata;

    fn target() -> S3Target {
        S3Target {
            bucket: "evidence".into(),
            key: "case/host/t/sda.raw.zst".into(),
            part_size: 5 << 20,
            concurrency: 2,
            sse_kms_key_id: None,
            abort_deadline: Duration::from_secs(1),
        }
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    }

    fn access_denied() -> ErrorMetadata {
        ErrorMetadata::builder()
            .code("AccessDenied")
            .message("Access Denied")
            .build()
    }

    #[test]
    fn access_denied_on_create_names_the_permission() {
        let rt = rt();
        let create = mock!(Client::create_multipart_upload)
            .then_error(|| CreateMultipartUploadError::generic(access_denied()));
        let client = mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&create]);
        let err = S3Sink::create(client, rt.handle().clone(), target())
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("AccessDenied")
                && err.contains("s3:PutObject")
                && err.contains("CreateMultipartUpload"),
            "{err}"
        );
    }

    #[test]
    fn transient_503s_are_retried_and_the_upload_completes() -> Result<(), SinkError> {
        let rt = rt();
        let create = mock!(Client::create_multipart_upload).then_output(|| {
            CreateMultipartUploadOutput::builder()
                .upload_id("u1")
                .build()
        });
        let part = mock!(Client::upload_part)
            .sequence()
            .http_status(503, None)
            .times(2)
            .output(|| UploadPartOutput::builder().e_tag("\"e1\"").build())
            .build();
        let complete = mock!(Client::complete_multipart_upload).then_output(|| {
            CompleteMultipartUploadOutput::builder()
                .e_tag("\"final-1\"")
                .build()
        });
        let client = mock_client!(
            aws_sdk_s3,
            RuleMode::MatchAny,
            [&create, &part, &complete],
            |b| b.retry_config(RetryConfig::standard().with_max_attempts(3))
        );
        let mut sink = S3Sink::create(client, rt.handle().clone(), target())?;
        sink.write(b"compressed evidence")?;
        let stored = sink.finish()?;
        assert_eq!(stored.parts, Some(1));
        assert_eq!(stored.etag.as_deref(), Some("\"final-1\""));
        assert_eq!(part.num_calls(), 3);
        assert_eq!(complete.num_calls(), 1);
        Ok(())
    }

    #[test]
    fn a_failed_part_aborts_the_upload() -> Result<(), SinkError> {
        let rt = rt();
        let create = mock!(Client::create_multipart_upload).then_output(|| {
            CreateMultipartUploadOutput::builder()
                .upload_id("u2")
                .build()
        });
        let part =
            mock!(Client::upload_part).then_error(|| UploadPartError::generic(access_denied()));
        let complete = mock!(Client::complete_multipart_upload)
            .then_output(|| CompleteMultipartUploadOutput::builder().build());
        let abort = mock!(Client::abort_multipart_upload)
            .then_output(|| AbortMultipartUploadOutput::builder().build());
        let client = mock_client!(
            aws_sdk_s3,
            RuleMode::MatchAny,
            [&create, &part, &complete, &abort]
        );
        let mut sink = S3Sink::create(client, rt.handle().clone(), target())?;
        sink.write(&vec![7u8; 6 << 20])?;
        let err = sink.finish().unwrap_err().to_string();
        assert!(
            err.contains("UploadPart 1") && err.contains("AccessDenied"),
            "{err}"
        );
        let report = sink.abort();
        assert!(report.clean, "{}", report.detail);
        assert_eq!(abort.num_calls(), 1);
        assert_eq!(
            complete.num_calls(),
            0,
            "never complete an upload with a failed part"
        );
        Ok(())
    }

    #[test]
    fn abort_that_cannot_reach_s3_says_how_to_clean_up() -> Result<(), SinkError> {
        let rt = rt();
        let create = mock!(Client::create_multipart_upload).then_output(|| {
            CreateMultipartUploadOutput::builder()
                .upload_id("u3")
                .build()
        });
        let abort = mock!(Client::abort_multipart_upload).then_http_response(|| {
            aws_smithy_runtime_api::http::Response::new(
                aws_smithy_runtime_api::http::StatusCode::try_from(503).unwrap(),
                aws_smithy_types::body::SdkBody::empty(),
            )
        });
        let client = mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&create, &abort], |b| b
            .retry_config(RetryConfig::standard().with_max_attempts(1)));
        let mut sink = S3Sink::create(client, rt.handle().clone(), target())?;
        let report = sink.abort();
        assert!(!report.clean);
        assert!(report.detail.contains("aws s3api abort-multipart-upload --bucket evidence --key case/host/t/sda.raw.zst --upload-id u3"), "{}", report.detail);
        Ok(())
    }
}
