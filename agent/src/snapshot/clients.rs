//! EC2 and EBS clients in the snapshot's account, and AWS errors in plain words.
//!
//! With `--role-arn` the clients assume that role (the member account's snapshot reader): the
//! snapshot is read in place, in its own account, so an encrypted one is decrypted with that
//! account's KMS grant and nothing is shared or copied.

use aws_config::sts::AssumeRoleProvider;
use aws_smithy_runtime::client::retries::classifiers::HttpStatusCodeClassifier;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::s3_client::S3Options;

/// The EC2 and EBS clients a snapshot read needs, and the region they are in.
#[derive(Debug, Clone)]
pub struct Clients {
    /// `DescribeSnapshots`.
    pub ec2: aws_sdk_ec2::Client,
    /// `ListSnapshotBlocks`, `GetSnapshotBlock`, `ListChangedBlocks`.
    pub ebs: aws_sdk_ebs::Client,
    /// The region the snapshots are read in.
    pub region: String,
}

/// Builds the clients: the default credential chain, or `role_arn` assumed from it.
/// Endpoints follow the SDK's own settings (`AWS_ENDPOINT_URL_EC2`, `AWS_ENDPOINT_URL_EBS`,
/// `AWS_ENDPOINT_URL_STS`), which is how tests point them at an emulator.
pub async fn build(region: Option<String>, role_arn: Option<&str>, session: &str) -> Clients {
    let opts = S3Options {
        region,
        endpoint_url: None,
        // Throttling is expected at full speed: the SDK backs off, and the reader retries
        // a block again itself after that (reader::fetch_block).
        max_attempts: 8,
    };
    let mut shared = crate::s3_client::sdk_config(&opts).await;
    if shared.region().is_none() {
        shared = shared
            .into_builder()
            .region(aws_config::Region::new("us-east-1"))
            .build();
    }
    if let Some(arn) = role_arn {
        let provider = AssumeRoleProvider::builder(arn)
            .session_name(session)
            .configure(&shared)
            .build()
            .await;
        shared = shared
            .into_builder()
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(provider),
            )
            .build();
    }
    let region = shared
        .region()
        .map_or_else(|| "us-east-1".to_owned(), |r| r.to_string());
    // The EBS direct APIs ask callers to retry every 5xx; the SDK's default classifiers retry
    // only the error codes they know (not EBS's InternalServerException), so status codes too.
    let ebs = aws_sdk_ebs::config::Builder::from(&shared)
        .retry_classifier(HttpStatusCodeClassifier::default())
        .build();
    Clients {
        ec2: aws_sdk_ec2::Client::new(&shared),
        ebs: aws_sdk_ebs::Client::from_conf(ebs),
        region,
    }
}

/// The STS session name for `--role-arn`: `airf-<case>`, cut to the 64 characters STS allows
/// (a case id is already limited to characters STS accepts).
pub fn session_name(case: &str) -> String {
    let mut name = format!("airf-{case}");
    name.truncate(64);
    name
}

/// Whether `err` is worth another try after the SDK's own retries: throttling, a server error,
/// or the network.
pub fn is_transient<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    match err {
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or("");
            is_busy(code) || code == "InternalServerException"
        }
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            true
        }
        _ => false,
    }
}

/// Error codes that mean "busy, try again later" (throttling or a server-side fault).
fn is_busy(code: &str) -> bool {
    matches!(
        code,
        "RequestThrottledException"
            | "ThrottlingException"
            | "Throttling"
            | "ConcurrentLimitExceededException"
            | "RequestLimitExceeded"
            | "InternalError"
            | "ServiceUnavailable"
    )
}

/// What to grant when `op` is refused.
fn permission_hint(op: &str) -> String {
    match op {
        "ec2:DescribeSnapshots" => "grant ec2:DescribeSnapshots to the reader (the templates give it to AirfSnapshotReader)".into(),
        "sts:AssumeRole" => "the caller needs sts:AssumeRole on --role-arn, and that role's trust policy must name the caller (the templates trust AirfSnapshotTask)".into(),
        _ => format!(
            "grant {op} on the snapshot (the templates grant ebs:ListSnapshotBlocks, ebs:GetSnapshotBlock and ebs:ListChangedBlocks on snapshots tagged airf:case) and, for an encrypted snapshot, kms:Decrypt on its key through EC2 (kms:ViaService)"
        ),
    }
}

/// One sentence for a failed call: which call, on what, what AWS said, and the fix.
pub fn explain<E, R>(op: &str, target: &str, err: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match err {
        SdkError::ServiceError(se) => {
            let e = se.err();
            let code = e.code().unwrap_or("Unknown");
            let msg = e.message().map(|m| format!(": {m}")).unwrap_or_default();
            let fix = match code {
                "AccessDeniedException" | "AccessDenied" | "UnauthorizedOperation" => {
                    format!("; {}", permission_hint(op))
                }
                "InvalidClientTokenId" | "UnrecognizedClientException" | "ExpiredToken" => {
                    "; check the AWS credentials in use (`aws sts get-caller-identity`)".into()
                }
                _ if is_busy(code) || code == "InternalServerException" => {
                    "; the service stayed busy through every retry: run again, or lower --max-block-rate and --block-requests".into()
                }
                _ => String::new(),
            };
            format!("{op} on {target} failed: {code}{msg}{fix}")
        }
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => format!(
            "{op} on {target} failed: cannot reach the endpoint ({}); check the network, the region (--snapshot-region) and AWS_ENDPOINT_URL_EBS / AWS_ENDPOINT_URL_EC2 if set",
            aws_sdk_ebs::error::DisplayErrorContext(err)
        ),
        _ => format!(
            "{op} on {target} failed: {}",
            aws_sdk_ebs::error::DisplayErrorContext(err)
        ),
    }
}

/// The service's error code, when it sent one.
pub fn code<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> Option<&str> {
    match err {
        SdkError::ServiceError(se) => se.err().code(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_names_fit_sts() {
        let long = "a".repeat(128);
        assert_eq!(session_name(&long).len(), 64);
        assert_eq!(session_name("IR-1"), "airf-IR-1");
    }

    #[test]
    fn refusals_name_the_permission() {
        assert!(permission_hint("ebs:GetSnapshotBlock").contains("ebs:GetSnapshotBlock"));
        assert!(permission_hint("ebs:GetSnapshotBlock").contains("kms:Decrypt"));
        assert!(permission_hint("ec2:DescribeSnapshots").contains("ec2:DescribeSnapshots"));
    }
}
