//! `bootstrap` for the `provided.al2023` Lambda runtime.

use airf_controller::{Config, Error, aws::AwsCloud, handle};
use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .without_time()
        .init();
    let config = Config::from_env().map_err(|e| Box::new(e) as lambda_runtime::Error)?;
    let cloud = AwsCloud::from_env(config.member_role_name.clone(), &config.evidence_region).await;
    let (cloud, config) = (&cloud, &config);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let result = match now_rfc3339() {
            Ok(now) => handle(cloud, config, event.payload, &now).await,
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            tracing::warn!(error_type = e.kind().error_type(), "{e}");
        }
        result.map_err(Diagnostic::from)
    }))
    .await
}

/// The current UTC time, RFC 3339: containment revokes the sessions issued before it.
fn now_rfc3339() -> Result<String, Error> {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| Error::failed(format!("formatting the current time: {e}")))
}
