//! [`Cloud`](crate::cloud::Cloud) on the AWS SDK, one module per service. Calls in member
//! accounts go through the member role (`sts.rs`); StartExecution, Publish, the evidence reads,
//! the countersignatures (KMS) and the custody log use the controller's own role. This module builds the clients and turns SDK errors into
//! [`Error`]s that say whether the workflow should retry.

mod autoscaling;
mod control_plane;
mod ec2;
mod elbv2;
mod iam;
mod kms;
mod restore;
mod routes;
mod s3;
mod sfn;
mod sns;
mod ssm;
mod sts;

use crate::error::Error;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use aws_types::SdkConfig;
use aws_types::region::Region;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Mutex;

/// The SDK implementation.
#[derive(Debug)]
pub struct AwsCloud {
    base: SdkConfig,
    member_role_name: String,
    sts: aws_sdk_sts::Client,
    sfn: aws_sdk_sfn::Client,
    sns: aws_sdk_sns::Client,
    s3: aws_sdk_s3::Client,
    kms: aws_sdk_kms::Client,
    members: Mutex<HashMap<(String, String), Arc<sts::Member>>>,
}

impl AwsCloud {
    /// Clients from the Lambda environment (credentials, region, `AWS_ENDPOINT_URL` in tests).
    pub async fn from_env(member_role_name: String, evidence_region: &str) -> Self {
        let base = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        // An endpoint override is an emulator on an IP address: S3 needs path-style requests.
        let path_style = std::env::var_os("AWS_ENDPOINT_URL").is_some();
        Self::from_config(base, member_role_name, evidence_region, path_style)
    }

    /// Clients from an SDK configuration.
    pub fn from_config(
        base: SdkConfig,
        member_role_name: String,
        evidence_region: &str,
        s3_path_style: bool,
    ) -> Self {
        let s3_conf = aws_sdk_s3::config::Builder::from(&base)
            .region(Region::new(evidence_region.to_owned()))
            .force_path_style(s3_path_style)
            .build();
        AwsCloud {
            sts: aws_sdk_sts::Client::new(&base),
            sfn: aws_sdk_sfn::Client::new(&base),
            sns: aws_sdk_sns::Client::new(&base),
            s3: aws_sdk_s3::Client::from_conf(s3_conf),
            kms: aws_sdk_kms::Client::new(&base),
            base,
            member_role_name,
            members: Mutex::new(HashMap::new()),
        }
    }
}

/// Error codes that mean "try again later".
const RETRYABLE_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "RequestThrottled",
    "SlowDown",
    "ServiceUnavailable",
    "InternalError",
    "InternalFailure",
    "IncorrectInstanceState",
    "IncorrectState",
];

/// Maps a failed call of `operation` (`service:Action`, as IAM names it) to [`Error::Aws`],
/// retryable when the cause is throttling, a server error or the network.
fn aws_err<E>(operation: &'static str) -> impl FnOnce(SdkError<E, HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    move |e| {
        let code = e.code().unwrap_or_default().to_owned();
        let server = e
            .raw_response()
            .is_some_and(|r| r.status().is_server_error());
        let retryable = matches!(e, SdkError::TimeoutError(_) | SdkError::DispatchFailure(_))
            || server
            || RETRYABLE_CODES.contains(&code.as_str());
        Error::Aws {
            operation,
            message: DisplayErrorContext(&e).to_string(),
            retryable,
        }
    }
}

/// The service's error code; empty when the error has none (a network failure).
fn code_of<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> &str {
    e.code().unwrap_or_default()
}
