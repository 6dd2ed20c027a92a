//! The inline role policy that cuts off credentials the instance already had. Swapping the
//! instance profile stops new credentials, but those issued before stay valid until they expire,
//! wherever they were copied to. IAM's way to end them is a deny conditioned on when the session
//! was issued. The deny is scoped to sessions of this one instance: a role is often shared by a
//! fleet, and the other instances must keep working.

use crate::model::Target;

/// Name of the inline policy that revokes this instance's earlier sessions on a role. One per
/// instance, so containing a second instance of a fleet adds a policy instead of replacing one.
pub fn policy_name(instance_id: &str) -> String {
    format!("airf-revoke-{instance_id}")
}

/// The policy document: deny every action on every resource to sessions of `target` issued
/// before `before` (RFC 3339, the time containment began).
pub fn policy_document(target: &Target, before: &str) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "AirfRevokeSessionsOfContainedInstance",
            "Effect": "Deny",
            "Action": "*",
            "Resource": "*",
            "Condition": {
                "DateLessThan": { "aws:TokenIssueTime": before },
                "StringEquals": { "ec2:SourceInstanceARN": target.instance_arn() }
            }
        }]
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    const BEFORE: &str = "2026-11-29T18:00:00Z";

    fn target(region: &str) -> Target {
        Target {
            instance_id: "i-0123456789abcdef0".into(),
            account: "111111111111".into(),
            region: region.into(),
        }
    }

    fn parsed(target: &Target, before: &str) -> Value {
        serde_json::from_str(&policy_document(target, before)).expect("the document is JSON")
    }

    /// The only statement: what it denies, to whom. Nothing in the document allows anything.
    fn statement(document: &Value) -> &serde_json::Map<String, Value> {
        assert_eq!(document["Version"], "2012-10-17");
        let statements = document["Statement"].as_array().expect("Statement list");
        assert_eq!(statements.len(), 1, "{document}");
        statements[0].as_object().expect("statement object")
    }

    #[test]
    fn denies_everything_to_this_instance_sessions_issued_before_containment() {
        let doc = parsed(&target("eu-west-1"), BEFORE);
        let s = statement(&doc);
        assert_eq!(s["Effect"], "Deny");
        assert_eq!(s["Action"], "*");
        assert_eq!(s["Resource"], "*");
        assert!(
            !s.contains_key("NotAction") && !s.contains_key("NotResource"),
            "{doc}"
        );
        assert_eq!(
            s["Condition"],
            json!({
                "DateLessThan": { "aws:TokenIssueTime": BEFORE },
                "StringEquals": {
                    "ec2:SourceInstanceARN":
                        "arn:aws:ec2:eu-west-1:111111111111:instance/i-0123456789abcdef0"
                }
            }),
            "only sessions of this instance, only those issued before containment"
        );
    }

    #[test]
    fn sessions_issued_after_containment_are_not_denied() {
        // The time is an upper bound: if responders later give the instance its role back, its
        // new sessions work. The same operator as IAM's own "revoke active sessions".
        let doc = parsed(&target("eu-west-1"), BEFORE);
        let condition = statement(&doc)["Condition"]
            .as_object()
            .expect("Condition object");
        let on_issue_time: Vec<&String> = condition
            .iter()
            .filter(|(_, keys)| keys.get("aws:TokenIssueTime").is_some())
            .map(|(operator, _)| operator)
            .collect();
        assert_eq!(on_issue_time, ["DateLessThan"], "{doc}");
    }

    #[test]
    fn the_instance_is_named_in_its_region_partition() {
        for (region, partition) in [
            ("cn-north-1", "aws-cn"),
            ("us-gov-west-1", "aws-us-gov"),
            ("us-east-1", "aws"),
        ] {
            let doc = parsed(&target(region), BEFORE);
            assert_eq!(
                doc["Statement"][0]["Condition"]["StringEquals"]["ec2:SourceInstanceARN"],
                format!("arn:{partition}:ec2:{region}:111111111111:instance/i-0123456789abcdef0")
            );
        }
    }

    #[test]
    fn name_and_document_fit_iam_limits() {
        // Policy names: 1-128 of [A-Za-z0-9+=,.@_-]; a role's inline policies: 10,240
        // characters in all, so one revocation must leave room for many.
        let name = policy_name("i-0123456789abcdef0");
        assert_eq!(name, "airf-revoke-i-0123456789abcdef0");
        assert!(
            name.len() <= 128
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
        );
        let longest = Target {
            region: "us-gov-southwest-99".into(),
            ..target("x")
        };
        assert!(policy_document(&longest, BEFORE).len() < 1024);
    }

    proptest! {
        /// `before` is data, never policy syntax: whatever it holds, the document stays one
        /// statement and carries it unchanged.
        #[test]
        fn any_time_text_is_carried_verbatim(before in ".{0,40}") {
            let doc = parsed(&target("eu-west-1"), &before);
            let s = statement(&doc);
            prop_assert_eq!(&s["Effect"], "Deny");
            prop_assert_eq!(
                s["Condition"]["DateLessThan"]["aws:TokenIssueTime"].as_str(),
                Some(before.as_str())
            );
        }
    }
}
