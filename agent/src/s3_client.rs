//! Building the S3 client and turning SDK errors into sentences a responder can act on.
//!
//! Credentials come from the default AWS chain (environment, profile, SSO, instance role), so
//! on an instance the role just works. `--endpoint-url` or the standard `AWS_ENDPOINT_URL`
//! point it at an S3-compatible server (path-style addressing is then used).

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

/// Connection settings given on the command line.
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    /// AWS region; otherwise the default chain (`AWS_REGION`, profile, instance metadata).
    pub region: Option<String>,
    /// Custom endpoint; otherwise `AWS_ENDPOINT_URL(_S3)` or AWS.
    pub endpoint_url: Option<String>,
    /// Attempts per request, including the first.
    pub max_attempts: u32,
}

/// The shared AWS configuration from the default chain plus `opts`: retries, timeouts, TLS
/// trust, region and endpoint, the same for every service client the agent builds.
pub async fn sdk_config(opts: &S3Options) -> aws_config::SdkConfig {
    // The standard AWS_MAX_ATTEMPTS wins over our default, as in every AWS tool.
    let attempts = std::env::var("AWS_MAX_ATTEMPTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(opts.max_attempts);
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(crate::tls::https_client())
        .retry_config(RetryConfig::standard().with_max_attempts(attempts.max(1)))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .read_timeout(Duration::from_secs(120))
                .build(),
        );
    if let Some(region) = &opts.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some(url) = &opts.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

/// Builds a client from the default chain plus `opts`.
pub async fn build(opts: &S3Options) -> Client {
    let shared = sdk_config(opts).await;
    let custom_endpoint = shared.endpoint_url().is_some();
    let mut config = aws_sdk_s3::config::Builder::from(&shared)
        .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired);
    if custom_endpoint {
        config = config.force_path_style(true);
    }
    if shared.region().is_none() {
        config = config.region(aws_config::Region::new("us-east-1"));
    }
    Client::from_conf(config.build())
}

/// What to grant when S3 refuses `op`. Acquiring only writes: the shipped acquisition role is
/// write-only on purpose (packaging/cloudformation), so reading evidence back (`verify`) takes
/// other credentials, never a wider acquisition role.
fn access_hint(op: &str) -> &'static str {
    if op.starts_with("ListObjectsV2") || op.starts_with("ListMultipartUploads") {
        "; after a lost response the agent lists its own key to learn what S3 kept: the acquisition role needs s3:ListBucket (with an s3:prefix condition on the evidence prefix) and s3:ListBucketMultipartUploads on the bucket, as the templates grant; it never needs to read an object"
    } else if op.starts_with("GetObject") || op.starts_with("HeadObject") {
        "; reading evidence needs s3:GetObject on it (and kms:Decrypt for SSE-KMS objects): run verify with an analyst's credentials, as the acquisition role is write-only by design"
    } else {
        "; the credentials in use (instance role, profile or environment) need s3:PutObject and s3:AbortMultipartUpload on that prefix (and kms:GenerateDataKey and kms:Decrypt for --sse-kms-key-id)"
    }
}

/// One line describing a failed S3 call: what failed, the server's code and message, and the
/// fix when the code says what it is.
pub fn describe<E, R>(op: &str, target: &str, err: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match err {
        SdkError::ServiceError(se) => {
            let e = se.err();
            let code = e.code().unwrap_or("Unknown");
            let msg = e.message().unwrap_or("");
            let fix = match code {
                "NoSuchBucket" => "; check the bucket name in --to, or create the bucket",
                "AccessDenied" | "Forbidden" => access_hint(op),
                "InvalidAccessKeyId" | "SignatureDoesNotMatch" => {
                    "; check the AWS credentials in use (`aws sts get-caller-identity`)"
                }
                "PermanentRedirect"
                | "AuthorizationHeaderMalformed"
                | "IllegalLocationConstraintException" => {
                    "; the bucket is in another region: pass --region"
                }
                "KMS.NotFoundException" | "KMS.DisabledException" => "; check --sse-kms-key-id",
                _ => "",
            };
            format!(
                "S3 {op} on {target} failed: {code}{}{fix}",
                if msg.is_empty() {
                    String::new()
                } else {
                    format!(": {msg}")
                }
            )
        }
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
            let detail = aws_sdk_s3::error::DisplayErrorContext(err).to_string();
            let fix = if detail.to_lowercase().contains("certificate") {
                "the endpoint's TLS certificate is not trusted: add its CA to the system store, or point SSL_CERT_FILE at a PEM bundle that holds it"
            } else {
                "check the network, --endpoint-url / AWS_ENDPOINT_URL and --region"
            };
            format!("S3 {op} on {target} failed: cannot reach the S3 endpoint ({detail}); {fix}")
        }
        SdkError::ConstructionFailure(_) => format!(
            "S3 {op} on {target} failed before sending: {}; check the AWS credentials and region (`aws sts get-caller-identity`)",
            aws_sdk_s3::error::DisplayErrorContext(err)
        ),
        _ => format!(
            "S3 {op} on {target} failed: {}",
            aws_sdk_s3::error::DisplayErrorContext(err)
        ),
    }
}

/// The server's error code, when it sent one.
pub fn error_code<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> Option<String> {
    match err {
        SdkError::ServiceError(se) => se.err().code().map(str::to_owned),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::access_hint;

    #[test]
    fn acquisition_is_never_told_to_read() {
        for op in [
            "CreateMultipartUpload",
            "UploadPart 3",
            "PutObject",
            "AbortMultipartUpload",
        ] {
            let hint = access_hint(op);
            assert!(hint.contains("s3:PutObject"), "{op}: {hint}");
            assert!(!hint.contains("GetObject"), "{op}: {hint}");
        }
        let hint = access_hint("GetObject");
        assert!(
            hint.contains("s3:GetObject") && hint.contains("write-only"),
            "{hint}"
        );
    }
}
