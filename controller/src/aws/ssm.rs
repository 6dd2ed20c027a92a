//! Systems Manager, in the member account: whether the instance is managed, and the Run Command
//! that runs the acquisition documents.

use super::sts::Member;
use super::{aws_err, code_of};
use crate::cloud::Invocation;
use crate::error::{Error, Result};
use crate::model::Target;
use aws_sdk_ssm::types::{InstanceInformationStringFilter, PingStatus};
use std::collections::BTreeMap;

/// DescribeInstanceInformation: managed and online.
pub(super) async fn online(m: &Member, target: &Target) -> Result<bool> {
    let filter = InstanceInformationStringFilter::builder()
        .key("InstanceIds")
        .values(&target.instance_id)
        .build()
        .map_err(|e| Error::failed(format!("ssm filter: {e}")))?;
    let out = m
        .ssm
        .describe_instance_information()
        .filters(filter)
        .send()
        .await
        .map_err(aws_err("ssm:DescribeInstanceInformation"))?;
    Ok(out.instance_information_list().iter().any(|i| {
        i.instance_id() == Some(target.instance_id.as_str())
            && i.ping_status() == Some(&PingStatus::Online)
    }))
}

/// SendCommand; returns the command id.
pub(super) async fn send_command(
    m: &Member,
    target: &Target,
    document: &str,
    parameters: &BTreeMap<String, Vec<String>>,
    timeout_seconds: i32,
    comment: &str,
) -> Result<String> {
    let out = m
        .ssm
        .send_command()
        .document_name(document)
        .instance_ids(&target.instance_id)
        .set_parameters(Some(
            parameters
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ))
        .timeout_seconds(timeout_seconds)
        // SSM refuses comments over 100 characters.
        .comment(comment.chars().take(100).collect::<String>())
        .send()
        .await
        .map_err(aws_err("ssm:SendCommand"))?;
    out.command()
        .and_then(|c| c.command_id())
        .map(str::to_owned)
        .ok_or_else(|| Error::failed("ssm:SendCommand returned no command id"))
}

/// GetCommandInvocation for one plugin (step) of the document.
pub(super) async fn command_invocation(
    m: &Member,
    target: &Target,
    command_id: &str,
    plugin: &str,
) -> Result<Invocation> {
    let out = match m
        .ssm
        .get_command_invocation()
        .command_id(command_id)
        .instance_id(&target.instance_id)
        .plugin_name(plugin)
        .send()
        .await
    {
        Ok(out) => out,
        // Right after SendCommand the invocation may not exist yet.
        Err(e) if code_of(&e) == "InvocationDoesNotExist" => {
            return Ok(Invocation {
                status: "Pending".into(),
                stdout: String::new(),
                stderr: String::new(),
            });
        }
        Err(e) => return Err(aws_err("ssm:GetCommandInvocation")(e)),
    };
    Ok(Invocation {
        status: out
            .status()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_else(|| "Pending".into()),
        stdout: out.standard_output_content().unwrap_or_default().to_owned(),
        stderr: out.standard_error_content().unwrap_or_default().to_owned(),
    })
}
