//! The control-plane evidence's calls ([`ControlPlaneCall`]) on the member role's clients. The
//! evidence is the service's response as it came: an interceptor keeps the response body of the
//! call's last attempt, and the SDK's typed output is not used. EC2 and IAM answer in XML,
//! turned into JSON element by element ([`xml_to_json`]); CloudTrail answers in JSON.

use super::aws_err;
use super::sts::Member;
use crate::cloud::{ControlPlaneAnswer, ControlPlaneCall};
use crate::error::{Error, Result};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::AfterDeserializationInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde_json::{Map, Value};
use std::sync::{Arc, Mutex};

/// Keeps the body of the last response (every attempt overwrites it).
#[derive(Debug, Clone, Default)]
struct Capture(Arc<Mutex<Option<Vec<u8>>>>);

impl Intercept for Capture {
    fn name(&self) -> &'static str {
        "airf-control-plane-capture"
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> std::result::Result<(), BoxError> {
        let body = context.response().body().bytes().map(<[u8]>::to_vec);
        if let Ok(mut slot) = self.0.lock() {
            *slot = body;
        }
        Ok(())
    }
}

impl Capture {
    fn take(&self) -> Option<Vec<u8>> {
        self.0.lock().ok().and_then(|mut s| s.take())
    }
}

/// An SDK result as an answer: the captured body, or the service's refusal; a failure to reach
/// the service is an error (retryable as [`aws_err`] decides).
fn answer<T, E>(
    operation: &'static str,
    capture: &Capture,
    json: bool,
    result: std::result::Result<T, SdkError<E, HttpResponse>>,
) -> Result<ControlPlaneAnswer>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match result {
        Ok(_) => {
            let body = capture.take().ok_or_else(|| {
                Error::failed(format!("{operation}: the response body was not kept"))
            })?;
            let value = if json {
                serde_json::from_slice(&body)
                    .map_err(|e| Error::failed(format!("{operation}: a response not JSON: {e}")))?
            } else {
                let text = std::str::from_utf8(&body).map_err(|e| {
                    Error::failed(format!("{operation}: a response not UTF-8: {e}"))
                })?;
                xml_to_json(text)
                    .map_err(|e| Error::failed(format!("{operation}: a response not XML: {e}")))?
            };
            Ok(ControlPlaneAnswer::Answer(value))
        }
        Err(SdkError::ServiceError(e)) => {
            let err = e.err();
            Ok(ControlPlaneAnswer::Refused {
                code: err.code().unwrap_or("error").to_owned(),
                message: err.message().unwrap_or_default().to_owned(),
            })
        }
        Err(e) => Err(aws_err(operation)(e)),
    }
}

/// One call.
pub(super) async fn call(m: &Member, call: &ControlPlaneCall) -> Result<ControlPlaneAnswer> {
    use ControlPlaneCall::*;
    let c = Capture::default();
    macro_rules! send {
        ($op:literal, $json:expr, $builder:expr) => {
            answer(
                $op,
                &c,
                $json,
                $builder.customize().interceptor(c.clone()).send().await,
            )
        };
    }
    match call {
        DescribeInstances { instance_id } => send!(
            "ec2:DescribeInstances",
            false,
            m.ec2.describe_instances().instance_ids(instance_id)
        ),
        DescribeNetworkInterfaces { ids } => send!(
            "ec2:DescribeNetworkInterfaces",
            false,
            m.ec2
                .describe_network_interfaces()
                .set_network_interface_ids(Some(ids.clone()))
        ),
        DescribeSecurityGroups { ids } => send!(
            "ec2:DescribeSecurityGroups",
            false,
            m.ec2
                .describe_security_groups()
                .set_group_ids(Some(ids.clone()))
        ),
        DescribeRouteTables { vpc_id } => send!(
            "ec2:DescribeRouteTables",
            false,
            m.ec2.describe_route_tables().filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("vpc-id")
                    .values(vpc_id)
                    .build()
            )
        ),
        DescribeFlowLogs { resource_ids } => send!(
            "ec2:DescribeFlowLogs",
            false,
            m.ec2.describe_flow_logs().filter(
                aws_sdk_ec2::types::Filter::builder()
                    .name("resource-id")
                    .set_values(Some(resource_ids.clone()))
                    .build()
            )
        ),
        GetConsoleOutput { instance_id } => send!(
            "ec2:GetConsoleOutput",
            false,
            m.ec2
                .get_console_output()
                .instance_id(instance_id)
                .latest(true)
        ),
        GetConsoleScreenshot { instance_id } => send!(
            "ec2:GetConsoleScreenshot",
            false,
            m.ec2
                .get_console_screenshot()
                .instance_id(instance_id)
                .wake_up(false)
        ),
        GetInstanceProfile { name } => send!(
            "iam:GetInstanceProfile",
            false,
            m.iam.get_instance_profile().instance_profile_name(name)
        ),
        GetRole { name } => send!("iam:GetRole", false, m.iam.get_role().role_name(name)),
        ListAttachedRolePolicies { role } => send!(
            "iam:ListAttachedRolePolicies",
            false,
            m.iam
                .list_attached_role_policies()
                .role_name(role)
                .max_items(100)
        ),
        ListRolePolicies { role } => send!(
            "iam:ListRolePolicies",
            false,
            m.iam.list_role_policies().role_name(role).max_items(100)
        ),
        GetRolePolicy { role, policy } => send!(
            "iam:GetRolePolicy",
            false,
            m.iam.get_role_policy().role_name(role).policy_name(policy)
        ),
        GetPolicy { arn } => send!("iam:GetPolicy", false, m.iam.get_policy().policy_arn(arn)),
        GetPolicyVersion { arn, version } => send!(
            "iam:GetPolicyVersion",
            false,
            m.iam
                .get_policy_version()
                .policy_arn(arn)
                .version_id(version)
        ),
        LookupEvents {
            key,
            value,
            start,
            end,
            max_results,
            next_token,
        } => {
            use aws_sdk_cloudtrail::primitives::{DateTime, DateTimeFormat};
            use aws_sdk_cloudtrail::types::{LookupAttribute, LookupAttributeKey};
            let time = |s: &str| {
                DateTime::from_str(s, DateTimeFormat::DateTime)
                    .map_err(|e| Error::failed(format!("LookupEvents time {s:?}: {e}")))
            };
            let attribute = LookupAttribute::builder()
                .attribute_key(LookupAttributeKey::from(key.as_str()))
                .attribute_value(value)
                .build()
                .map_err(|e| Error::failed(format!("LookupEvents attribute: {e}")))?;
            send!(
                "cloudtrail:LookupEvents",
                true,
                m.cloudtrail
                    .lookup_events()
                    .lookup_attributes(attribute)
                    .start_time(time(start)?)
                    .end_time(time(end)?)
                    .max_results(*max_results)
                    .set_next_token(next_token.clone())
            )
        }
    }
}

/// An XML document in JSON, element by element: `{root name: value}`, where an element with
/// children is an object of them (a name that repeats collects an array), one whose children
/// are all `item` or `member` (the EC2 and IAM list wrappers) an array, one with text a string
/// and an empty one `null`. Attributes (namespaces) are left out; AWS's answers carry data in
/// elements only.
pub fn xml_to_json(text: &str) -> std::result::Result<Value, roxmltree::Error> {
    let doc = roxmltree::Document::parse(text)?;
    let root = doc.root_element();
    let mut out = Map::new();
    out.insert(root.tag_name().name().to_owned(), element(root));
    Ok(Value::Object(out))
}

fn element(node: roxmltree::Node<'_, '_>) -> Value {
    let children: Vec<_> = node.children().filter(|c| c.is_element()).collect();
    if children.is_empty() {
        return match node.text() {
            Some(t) if !t.is_empty() => Value::String(t.to_owned()),
            _ => Value::Null,
        };
    }
    if children
        .iter()
        .all(|c| matches!(c.tag_name().name(), "item" | "member"))
    {
        return Value::Array(children.into_iter().map(element).collect());
    }
    let mut map = Map::new();
    for c in &children {
        let name = c.tag_name().name();
        let many = children
            .iter()
            .filter(|o| o.tag_name().name() == name)
            .count()
            > 1;
        let value = element(*c);
        if many {
            if let Value::Array(a) = map
                .entry(name.to_owned())
                .or_insert_with(|| Value::Array(Vec::new()))
            {
                a.push(value);
            }
        } else {
            map.insert(name.to_owned(), value);
        }
    }
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ec2_and_iam_answers_read_as_json() {
        let ec2 = r#"<?xml version="1.0" encoding="UTF-8"?>
<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
  <requestId>r-1</requestId>
  <reservationSet><item><reservationId>r-0</reservationId><groupSet/>
    <instancesSet><item><instanceId>i-1</instanceId>
      <metadataOptions><httpTokens>required</httpTokens><httpPutResponseHopLimit>1</httpPutResponseHopLimit></metadataOptions>
      <networkInterfaceSet><item><networkInterfaceId>eni-1</networkInterfaceId></item><item><networkInterfaceId>eni-2</networkInterfaceId></item></networkInterfaceSet>
    </item></instancesSet></item></reservationSet>
</DescribeInstancesResponse>"#;
        assert_eq!(
            xml_to_json(ec2).unwrap(),
            json!({"DescribeInstancesResponse": {"requestId": "r-1", "reservationSet": [{
                "reservationId": "r-0", "groupSet": null,
                "instancesSet": [{"instanceId": "i-1",
                    "metadataOptions": {"httpTokens": "required", "httpPutResponseHopLimit": "1"},
                    "networkInterfaceSet": [{"networkInterfaceId": "eni-1"}, {"networkInterfaceId": "eni-2"}]}]}]}})
        );
        let repeated = "<a><b>1</b><b>2</b><b>3</b><c/></a>";
        assert_eq!(
            xml_to_json(repeated).unwrap(),
            json!({"a": {"b": ["1", "2", "3"], "c": null}})
        );
        assert!(xml_to_json("<a><b></a>").is_err());
    }
}
