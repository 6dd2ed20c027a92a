//! Step Functions, in the controller's own account: starting an investigation's workflow.

use super::{AwsCloud, aws_err, code_of};
use crate::cloud::Started;
use crate::error::Result;

/// StartExecution. Step Functions answers the running execution for the same name and input,
/// and `ExecutionAlreadyExists` for a name taken by an ended execution or another input.
pub(super) async fn start_execution(
    cloud: &AwsCloud,
    state_machine_arn: &str,
    name: &str,
    input: &str,
) -> Result<Started> {
    match cloud
        .sfn
        .start_execution()
        .state_machine_arn(state_machine_arn)
        .name(name)
        .input(input)
        .send()
        .await
    {
        Ok(out) => Ok(Started::Execution(out.execution_arn().to_owned())),
        Err(e) if code_of(&e) == "ExecutionAlreadyExists" => Ok(Started::AlreadyExists),
        Err(e) => Err(aws_err("states:StartExecution")(e)),
    }
}
