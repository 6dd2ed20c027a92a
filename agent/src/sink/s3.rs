//! S3 multipart upload with bounded memory and per-part SHA-256 checksums.
//!
//! The pipeline's assembler thread calls [`ImageSink::write`]; full parts are handed to tokio
//! tasks, at most `concurrency` at a time (a semaphore: when all are busy, `write` waits, which
//! backs the whole pipeline up to the reader). Each part carries `x-amz-checksum-sha256`, and
//! CompleteMultipartUpload lists them, so S3 rejects any part that changed in flight. On abort,
//! in-flight parts are cancelled and AbortMultipartUpload is retried until it sticks or a
//! deadline passes, in which case the exact clean-up command is reported.
//!
//! Completion and small objects are written with `If-None-Match: *`: evidence is never
//! replaced. A lost response is not a failure when S3 kept what was sent ([`confirm`]), and an
//! upload started by a CreateMultipartUpload whose response was lost is found and aborted
//! ([`orphans`]).

mod confirm;
mod orphans;

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, ServerSideEncryption};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::{Bytes, BytesMut};
use tokio::runtime::Handle;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use self::confirm::{Kept, kept_at, multipart_etag, single_put_etag};
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
    /// Compressed bytes handed to parts so far.
    written: u64,
    /// Set once CompleteMultipartUpload was sent: from then on the object may exist.
    complete_sent: bool,
    warnings: Vec<String>,
}

fn uri(t: &S3Target) -> String {
    format!("s3://{}/{}", t.bucket, t.key)
}

impl S3Sink {
    /// Starts the multipart upload, so a wrong bucket or missing permission fails before any
    /// evidence is read. The parts' memory is capped (see [`part_buffers`]).
    pub fn create(client: Client, rt: Handle, target: S3Target) -> Result<Self, SinkError> {
        let created = orphans::create_upload(&client, &rt, &target)?;
        let mut warnings = Vec::new();
        if created.after_lost_response {
            warnings.extend(orphans::abort_others(
                &client,
                &rt,
                &target,
                &created.upload_id,
            ));
        }
        let concurrency = part_buffers(target.part_size, target.concurrency);
        let permits = Arc::new(Semaphore::new(concurrency));
        Ok(Self {
            client,
            rt,
            buf: BytesMut::with_capacity(usize::try_from(target.part_size).unwrap_or(usize::MAX)),
            spare: Arc::default(),
            target,
            upload_id: created.upload_id,
            next_part: 1,
            in_flight: Vec::new(),
            done: Vec::new(),
            permits,
            written: 0,
            complete_sent: false,
            warnings,
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
        self.written += body.len() as u64;
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

/// Bytes of part buffers an upload may hold: parts in flight plus the one being filled.
pub const PART_BUFFER_BUDGET: u64 = 48 << 20;

/// Parts in flight for `part_size`-byte parts: at most `requested`, and fewer when
/// `(in flight + 1) × part size` would pass [`PART_BUFFER_BUDGET`], so the agent's memory does
/// not grow with the part size that large sources need. Never fewer than one.
pub fn part_buffers(part_size: u64, requested: usize) -> usize {
    let fit = usize::try_from(PART_BUFFER_BUDGET / part_size.max(1)).unwrap_or(usize::MAX);
    requested.min(fit.saturating_sub(1)).max(1)
}

impl S3Sink {
    /// CompleteMultipartUpload with `If-None-Match: *`. A lost response is not a failure when
    /// S3 kept exactly this upload at the key: that is checked by listing the key.
    fn complete(&mut self) -> Result<StoredObject, SinkError> {
        let parts = self.done.len();
        let upload = CompletedMultipartUpload::builder()
            .set_parts(Some(self.done.clone()))
            .build();
        self.complete_sent = true;
        let sent = self.rt.block_on(
            self.client
                .complete_multipart_upload()
                .bucket(&self.target.bucket)
                .key(&self.target.key)
                .upload_id(&self.upload_id)
                .multipart_upload(upload)
                .if_none_match("*")
                .send(),
        );
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
        let mut stored = StoredObject {
            location: uri(&self.target),
            bucket: Some(self.target.bucket.clone()),
            key: Some(self.target.key.clone()),
            etag: None,
            version_id: None,
            parts: u32::try_from(parts).ok(),
            part_size: Some(self.target.part_size),
            checksum_sha256: Some(composite),
        };
        match sent {
            Ok(out) => {
                stored.etag = out.e_tag;
                stored.version_id = out.version_id;
                if let Some(c) = out.checksum_sha256 {
                    stored.checksum_sha256 = Some(c);
                }
            }
            Err(e) => {
                let failure = describe("CompleteMultipartUpload", &uri(&self.target), &e);
                let etag = multipart_etag(self.done.iter().filter_map(|p| p.e_tag()));
                let kept = kept_at(
                    &self.client,
                    &self.rt,
                    &self.target.bucket,
                    &self.target.key,
                    self.written,
                    etag.as_deref(),
                );
                match kept {
                    Ok(Kept::Ours) => {
                        self.warnings.push(format!(
                            "{failure}; but S3 had completed this upload (a response was lost): {} is there with this run's size and ETag, so it is kept",
                            uri(&self.target)
                        ));
                        stored.etag = etag.map(|e| format!("\"{e}\""));
                    }
                    Ok(Kept::SameSize) => {
                        self.warnings.push(format!(
                            "{failure}; but S3 had completed this upload (a response was lost): {} is there with this run's size (the parts' ETags could not confirm more)",
                            uri(&self.target)
                        ));
                    }
                    Ok(Kept::Other { size, etag }) => {
                        return Err(SinkError::S3(format!(
                            "{failure}; and {} holds another object ({size} bytes, ETag {etag}), not this upload: this run's image was not stored, and that object is not this run's evidence",
                            uri(&self.target)
                        )));
                    }
                    Ok(Kept::Missing) => return Err(SinkError::S3(failure)),
                    Err(list) => {
                        return Err(SinkError::S3(format!(
                            "{failure}; S3 may still have completed it, so {} may hold the whole image with no manifest (it is not evidence until verified); the check failed: {list}",
                            uri(&self.target)
                        )));
                    }
                }
            }
        }
        self.upload_id.clear();
        Ok(stored)
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
        self.complete()
    }

    fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
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
                Err(e)
                    if error_code(&e).as_deref() == Some("NoSuchUpload") && self.complete_sent =>
                {
                    return AbortReport {
                        clean: false,
                        detail: format!(
                            "multipart upload {} is gone, and its CompleteMultipartUpload was sent: {} may hold the whole image with no manifest; it is not evidence until verified (check with `aws s3 ls {}`)",
                            self.upload_id,
                            uri(&self.target),
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

/// Uploads a small object (a manifest or artifact) in one request with its SHA-256 checksum and
/// `If-None-Match: *`: an existing object is never replaced.
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
    let body_len = body.len() as u64;
    let etag_if_plain = single_put_etag(&body);
    let mut req = client
        .put_object()
        .bucket(bucket)
        .key(key)
        .if_none_match("*")
        .content_type(content_type)
        .checksum_sha256(&checksum)
        .body(ByteStream::from(body));
    if let Some(kms) = sse_kms_key_id {
        req = req
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .ssekms_key_id(kms);
    }
    let target = format!("s3://{bucket}/{key}");
    let size = body_len;
    let (etag, version_id) = match rt.block_on(req.send()) {
        Ok(out) => (out.e_tag, out.version_id),
        // A retry after a lost response meets the first attempt's object.
        Err(e) if error_code(&e).as_deref() == Some("PreconditionFailed") => {
            let failure = describe("PutObject", &target, &e);
            let want = sse_kms_key_id.is_none().then_some(etag_if_plain.as_str());
            match kept_at(client, rt, bucket, key, size, want) {
                Ok(Kept::Ours | Kept::SameSize) => (None, None),
                Ok(Kept::Other { size, etag }) => {
                    return Err(SinkError::S3(format!(
                        "{failure}: {target} already holds another object ({size} bytes, ETag {etag}); evidence is never overwritten"
                    )));
                }
                Ok(Kept::Missing) => return Err(SinkError::S3(failure)),
                Err(list) => {
                    return Err(SinkError::S3(format!(
                        "{failure}; {target} exists, and whether it is this run's could not be checked: {list}"
                    )));
                }
            }
        }
        Err(e) => return Err(SinkError::S3(describe("PutObject", &target, &e))),
    };
    Ok(StoredObject {
        location: target,
        bucket: Some(bucket.to_owned()),
        key: Some(key.to_owned()),
        etag,
        version_id,
        checksum_sha256: Some(checksum),
        ..StoredObject::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::config::retry::RetryConfig;
    use aws_sdk_s3::operation::abort_multipart_upload::AbortMultipartUploadError;
    use aws_sdk_s3::operation::abort_multipart_upload::AbortMultipartUploadOutput;
    use aws_sdk_s3::operation::complete_multipart_upload::CompleteMultipartUploadError;
    use aws_sdk_s3::operation::complete_multipart_upload::CompleteMultipartUploadOutput;
    use aws_sdk_s3::operation::create_multipart_upload::{
        CreateMultipartUploadError, CreateMultipartUploadOutput,
    };
    use aws_sdk_s3::operation::list_multipart_uploads::ListMultipartUploadsOutput;
    use aws_sdk_s3::operation::list_objects_v2::{ListObjectsV2Error, ListObjectsV2Output};
    use aws_sdk_s3::operation::put_object::PutObjectError;
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

    fn created(id: &'static str) -> aws_smithy_mocks::Rule {
        mock!(Client::create_multipart_upload)
            .then_output(move || CreateMultipartUploadOutput::builder().upload_id(id).build())
    }

    fn part_etag() -> String {
        format!("\"{}\"", confirm::single_put_etag(b"part one"))
    }

    fn error(code: &str) -> ErrorMetadata {
        ErrorMetadata::builder().code(code).message(code).build()
    }

    fn listing(key: &'static str, size: i64, etag: String) -> aws_smithy_mocks::Rule {
        mock!(Client::list_objects_v2).then_output(move || {
            ListObjectsV2Output::builder()
                .contents(
                    aws_sdk_s3::types::Object::builder()
                        .key(key)
                        .size(size)
                        .e_tag(etag.clone())
                        .build(),
                )
                .build()
        })
    }

    /// The retried Complete after a lost response meets the first one's success.
    fn lost_complete() -> aws_smithy_mocks::Rule {
        mock!(Client::complete_multipart_upload)
            .then_error(|| CompleteMultipartUploadError::generic(error("NoSuchUpload")))
    }

    #[test]
    fn a_lost_complete_response_is_not_a_failure_when_s3_kept_this_upload() -> Result<(), SinkError>
    {
        let rt = rt();
        let etag = part_etag();
        let part = mock!(Client::upload_part)
            .then_output(move || UploadPartOutput::builder().e_tag(part_etag()).build());
        let want = confirm::multipart_etag([etag.as_str()]).unwrap();
        let list = listing("case/host/t/sda.raw.zst", 19, format!("\"{want}\""));
        let (create, complete) = (created("u5"), lost_complete());
        let client = mock_client!(
            aws_sdk_s3,
            RuleMode::MatchAny,
            [&create, &part, &complete, &list]
        );
        let mut sink = S3Sink::create(client, rt.handle().clone(), target())?;
        sink.write(b"compressed evidence")?;
        let stored = sink.finish()?;
        assert_eq!(stored.parts, Some(1));
        let warnings = sink.take_warnings();
        assert!(
            warnings.len() == 1 && warnings[0].contains("a response was lost"),
            "{warnings:?}"
        );
        assert_eq!(list.num_calls(), 1);
        Ok(())
    }

    #[test]
    fn a_lost_complete_response_with_another_object_at_the_key_fails_and_names_it()
    -> Result<(), SinkError> {
        let rt = rt();
        let part = mock!(Client::upload_part)
            .then_output(|| UploadPartOutput::builder().e_tag(part_etag()).build());
        let list = listing("case/host/t/sda.raw.zst", 19, "\"0123-1\"".into());
        let (create, complete) = (created("u6"), lost_complete());
        let client = mock_client!(
            aws_sdk_s3,
            RuleMode::MatchAny,
            [&create, &part, &complete, &list]
        );
        let mut sink = S3Sink::create(client, rt.handle().clone(), target())?;
        sink.write(b"compressed evidence")?;
        let err = sink.finish().unwrap_err().to_string();
        assert!(
            err.contains("s3://evidence/case/host/t/sda.raw.zst holds another object"),
            "{err}"
        );
        Ok(())
    }

    #[test]
    fn a_complete_that_may_have_happened_is_named_when_abort_finds_no_upload()
    -> Result<(), SinkError> {
        let rt = rt();
        let part = mock!(Client::upload_part)
            .then_output(|| UploadPartOutput::builder().e_tag(part_etag()).build());
        let complete = mock!(Client::complete_multipart_upload)
            .then_error(|| CompleteMultipartUploadError::generic(error("InternalError")));
        let list = mock!(Client::list_objects_v2)
            .then_error(|| ListObjectsV2Error::generic(access_denied()));
        let abort = mock!(Client::abort_multipart_upload)
            .then_error(|| AbortMultipartUploadError::generic(error("NoSuchUpload")));
        let create = created("u7");
        let client = mock_client!(
            aws_sdk_s3,
            RuleMode::MatchAny,
            [&create, &part, &complete, &list, &abort],
            |b| b.retry_config(RetryConfig::standard().with_max_attempts(1))
        );
        let mut sink = S3Sink::create(client, rt.handle().clone(), target())?;
        sink.write(b"compressed evidence")?;
        let err = sink.finish().unwrap_err().to_string();
        assert!(err.contains("may hold the whole image"), "{err}");
        let report = sink.abort();
        assert!(!report.clean, "{}", report.detail);
        assert!(
            report
                .detail
                .contains("s3://evidence/case/host/t/sda.raw.zst may hold the whole image"),
            "{}",
            report.detail
        );
        Ok(())
    }

    #[test]
    fn an_upload_started_by_a_lost_create_response_is_aborted() -> Result<(), SinkError> {
        let rt = rt();
        // The first answer never arrives (a 500 here: S3 may have acted), the second does.
        let create = mock!(Client::create_multipart_upload)
            .sequence()
            .http_status(500, None)
            .output(|| {
                CreateMultipartUploadOutput::builder()
                    .upload_id("mine")
                    .build()
            })
            .build();
        let list = mock!(Client::list_multipart_uploads).then_output(|| {
            let upload = |id: &str, key: &str| {
                aws_sdk_s3::types::MultipartUpload::builder()
                    .key(key)
                    .upload_id(id)
                    .build()
            };
            ListMultipartUploadsOutput::builder()
                .uploads(upload("lost", "case/host/t/sda.raw.zst"))
                .uploads(upload("mine", "case/host/t/sda.raw.zst"))
                .uploads(upload("other-key", "case/host/t/sda.raw.zst.extra"))
                .build()
        });
        let abort = mock!(Client::abort_multipart_upload)
            .match_requests(|r| r.upload_id() == Some("lost"))
            .then_output(|| AbortMultipartUploadOutput::builder().build());
        let client = mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&create, &list, &abort]);
        let mut sink = S3Sink::create(client, rt.handle().clone(), target())?;
        assert_eq!(sink.upload_id(), "mine");
        assert_eq!(abort.num_calls(), 1, "only the lost upload of this key");
        let warnings = sink.take_warnings();
        assert!(
            warnings.len() == 1
                && warnings[0].contains("had started upload lost of")
                && warnings[0].contains("aborted it"),
            "{warnings:?}"
        );
        Ok(())
    }

    #[test]
    fn a_refused_create_is_not_retried_and_lists_nothing() {
        let rt = rt();
        let create = mock!(Client::create_multipart_upload)
            .then_error(|| CreateMultipartUploadError::generic(access_denied()));
        let list = mock!(Client::list_multipart_uploads)
            .then_output(|| ListMultipartUploadsOutput::builder().build());
        let client = mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&create, &list]);
        assert!(S3Sink::create(client, rt.handle().clone(), target()).is_err());
        assert_eq!(create.num_calls(), 1);
        assert_eq!(list.num_calls(), 0);
    }

    #[test]
    fn a_retried_put_that_meets_its_own_object_succeeds_and_another_object_fails() {
        let rt = rt();
        let body = b"{\"manifest\": 1}".to_vec();
        let etag = format!("\"{}\"", confirm::single_put_etag(&body));
        let put = mock!(Client::put_object)
            .then_error(|| PutObjectError::generic(error("PreconditionFailed")));
        let ours = listing("k/m.json", body.len() as i64, etag);
        let client = mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&put, &ours]);
        let stored = put_small(
            &client,
            rt.handle(),
            "b",
            "k/m.json",
            body.clone(),
            "application/json",
            None,
        );
        assert!(stored.is_ok(), "{stored:?}");

        let put = mock!(Client::put_object)
            .then_error(|| PutObjectError::generic(error("PreconditionFailed")));
        let other = listing("k/m.json", body.len() as i64, "\"ffff\"".into());
        let client = mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&put, &other]);
        let err = put_small(
            &client,
            rt.handle(),
            "b",
            "k/m.json",
            body,
            "application/json",
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("never overwritten"), "{err}");
    }

    /// The only guarantee against replacing evidence that does not depend on the names:
    /// S3 (and moto) refuse a conditional write to an existing key. Garage ignores the header,
    /// so there the unique run folders are the guarantee.
    #[test]
    fn every_write_is_conditional() -> Result<(), SinkError> {
        let rt = rt();
        let create = created("u8");
        let part = mock!(Client::upload_part)
            .then_output(|| UploadPartOutput::builder().e_tag(part_etag()).build());
        let complete = mock!(Client::complete_multipart_upload)
            .match_requests(|r| r.if_none_match() == Some("*"))
            .then_output(|| CompleteMultipartUploadOutput::builder().build());
        let put = mock!(Client::put_object)
            .match_requests(|r| r.if_none_match() == Some("*"))
            .then_output(|| aws_sdk_s3::operation::put_object::PutObjectOutput::builder().build());
        let client = mock_client!(
            aws_sdk_s3,
            RuleMode::MatchAny,
            [&create, &part, &complete, &put]
        );
        let mut sink = S3Sink::create(client.clone(), rt.handle().clone(), target())?;
        sink.write(b"x")?;
        sink.finish()?;
        put_small(
            &client,
            rt.handle(),
            "b",
            "k",
            b"{}".to_vec(),
            "application/json",
            None,
        )?;
        assert_eq!((complete.num_calls(), put.num_calls()), (1, 1));
        Ok(())
    }

    #[test]
    fn part_buffers_stay_within_the_budget() {
        assert_eq!(part_buffers(8 << 20, 4), 4);
        assert_eq!(part_buffers(12 << 20, 4), 3);
        assert_eq!(part_buffers(16 << 20, 4), 2);
        assert_eq!(part_buffers(512 << 20, 4), 1);
        assert_eq!(part_buffers(5 << 20, 64), 8);
        for part in [5u64 << 20, 8 << 20, 12 << 20, 16 << 20, 24 << 20] {
            let n = part_buffers(part, 64) as u64;
            assert!((n + 1) * part <= PART_BUFFER_BUDGET, "{part}");
        }
    }
}
