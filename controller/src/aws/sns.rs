//! SNS, in the controller's own account: notifications to responders.

use super::{AwsCloud, aws_err};
use crate::error::Result;

/// Publish.
pub(super) async fn publish(
    cloud: &AwsCloud,
    topic_arn: &str,
    subject: &str,
    message: &str,
) -> Result<()> {
    cloud
        .sns
        .publish()
        .topic_arn(topic_arn)
        .subject(subject)
        .message(message)
        .send()
        .await
        .map_err(aws_err("sns:Publish"))?;
    Ok(())
}
