use super::*;
use proptest::prelude::*;

const NOW: i64 = 1_795_975_200; // 2026-11-29T18:00:00Z
const ARN: &str = "arn:aws:ec2:eu-west-1:111111111111:instance/i-0123456789abcdef0";

fn statements(document: &str) -> Vec<Value> {
    let v: Value = serde_json::from_str(document).expect("JSON");
    assert_eq!(v["Version"], "2012-10-17");
    v["Statement"].as_array().expect("Statement list").clone()
}

#[test]
fn an_empty_boundary_allows_what_identity_policies_allow_and_matches_template_4() {
    let doc = Boundary::default().document().unwrap();
    // Compared as JSON: the key order depends on serde_json's features, which the workspace
    // unifies (preserve_order), never on what IAM reads.
    let parsed: Value = serde_json::from_str(&doc).expect("JSON");
    assert_eq!(
        parsed,
        serde_json::json!({"Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})
    );
    // Template 4 creates the policy with this content; a difference would make every first
    // containment rewrite it for nothing, and shows the two were edited apart.
    let template = include_str!("../../../../../../packaging/cloudformation/src/4-member.yaml");
    let at = template
        .find("  RevokedSessionsPolicy:\n")
        .expect("template 4 defines RevokedSessionsPolicy");
    let body = template.get(at..).unwrap_or_default();
    let body = body
        .get(..body.find("\n\n").unwrap_or(body.len()))
        .unwrap_or_default();
    let body = body
        .get(body.find("PolicyDocument:").expect("a document")..)
        .unwrap_or_default();
    for line in [
        "- Effect: Allow",
        "Action: \"*\"",
        "Resource: \"*\"",
        "Version: \"2012-10-17\"",
    ] {
        assert!(body.contains(line), "{line:?} not in\n{body}");
    }
    assert!(
        !body.contains("Effect: Deny") && !body.contains("Condition:"),
        "{body}"
    );
}

#[test]
fn a_revocation_denies_everything_to_this_instance_sessions_issued_before_the_time() {
    let mut b = Boundary::default();
    b.add(NOW, ARN);
    let doc = b.document().unwrap();
    let s = statements(&doc);
    assert_eq!(s.len(), 2, "{doc}");
    assert_eq!(
        s[1],
        json!({
            "Effect": "Deny", "Action": "*", "Resource": "*",
            "Condition": {
                "DateLessThan": {"aws:TokenIssueTime": "2026-11-29T18:00:00Z"},
                "ArnEquals": {"ec2:SourceInstanceARN": [ARN]}
            }
        })
    );
    assert_eq!(
        Boundary::parse(&doc).unwrap(),
        b,
        "reads back what it writes"
    );
}

#[test]
fn instances_contained_in_the_same_minute_share_one_statement() {
    let mut b = Boundary::default();
    let other = ARN.replace("i-0123456789abcdef0", "i-0fedcba9876543210");
    b.add(NOW, ARN);
    b.add(NOW, &other);
    b.add(NOW + 60, ARN);
    let s = statements(&b.document().unwrap());
    assert_eq!(s.len(), 3);
    assert_eq!(
        s[1]["Condition"]["ArnEquals"]["ec2:SourceInstanceARN"],
        json!([ARN, other])
    );
}

#[test]
fn a_later_revocation_covers_an_earlier_one_not_the_reverse() {
    let mut b = Boundary::default();
    b.add(NOW, ARN);
    assert!(b.covers(NOW, ARN) && b.covers(NOW - 60, ARN));
    assert!(
        !b.covers(NOW + 60, ARN),
        "sessions issued in [NOW, NOW+60) are not denied"
    );
    assert!(!b.covers(NOW, &ARN.replace("abcdef0", "abcdef1")));
}

#[test]
fn revocations_are_kept_for_36_hours_and_a_margin_then_pruned() {
    let mut b = Boundary::default();
    b.add(NOW, ARN);
    b.prune(NOW + 36 * 3600 + 14 * 60);
    assert!(
        b.covers(NOW, ARN),
        "a credential issued just before may still be valid"
    );
    b.prune(NOW + LIFETIME_SECS);
    assert_eq!(b.entries().count(), 0);
}

#[test]
fn foreign_denies_are_kept_verbatim_and_other_allows_dropped() {
    let doc = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
        {"Sid": "Mine", "Effect": "Deny", "Action": "iam:*", "Resource": "*"},
        {"Effect": "Deny", "Action": "*", "Resource": "*",
         "Condition": {"DateLessThan": {"aws:TokenIssueTime": "2026-11-29T17:00:00Z"}}},
        {"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"},
        "not a statement"
    ]})
    .to_string();
    let b = Boundary::parse(&doc).unwrap();
    let out = statements(&b.document().unwrap());
    assert_eq!(out.len(), 3, "{out:?}");
    assert_eq!(
        out[0],
        json!({"Effect": "Allow", "Action": "*", "Resource": "*"})
    );
    assert_eq!(out[1]["Sid"], "Mine");
    assert_eq!(
        out[2]["Condition"],
        json!({"DateLessThan": {"aws:TokenIssueTime": "2026-11-29T17:00:00Z"}}),
        "a revocation of every session is not airf's shape: kept as it is, never pruned"
    );
}

#[test]
fn a_single_statement_object_and_string_equals_are_read() {
    let doc = json!({"Version": "2012-10-17", "Statement": {
        "Effect": "Deny", "Action": ["*"], "Resource": "*",
        "Condition": {"DateLessThan": {"aws:TokenIssueTime": "2026-11-29T18:00:00.2Z"},
                      "StringEquals": {"ec2:SourceInstanceARN": ARN}}}})
    .to_string();
    let b = Boundary::parse(&doc).unwrap();
    assert!(b.covers(NOW + 1, ARN), "fractions round up: never narrowed");
    assert!(!b.covers(NOW + 2, ARN));
}

#[test]
fn a_document_over_the_quota_is_refused() {
    let mut b = Boundary::default();
    let mut n = 0u64;
    let full = loop {
        b.add(
            NOW + 60 * n as i64,
            &format!("{}{n:09}", &ARN[..ARN.len() - 9]),
        );
        n += 1;
        if let Err(full) = b.document() {
            break full;
        }
    };
    assert!(full.chars > MAX_CHARS);
    assert!(n > 20, "a statement per minute: {n} containments fit");
}

#[test]
fn what_is_not_a_policy_is_an_error_not_an_empty_boundary() {
    assert!(matches!(Boundary::parse("{"), Err(ParseError::NotJson(_))));
    assert_eq!(Boundary::parse("[]"), Err(ParseError::NotAPolicy));
    assert_eq!(
        Boundary::parse(r#"{"Version":"2012-10-17"}"#),
        Err(ParseError::NotAPolicy)
    );
}

#[test]
fn times_round_trip_and_clamp() {
    assert_eq!(rfc3339(NOW), "2026-11-29T18:00:00Z");
    assert_eq!(parse_time_up("2026-11-29T18:00:00Z"), Some(NOW));
    assert_eq!(parse_time_up("2026-11-29T19:00:00+01:00"), Some(NOW));
    assert_eq!(parse_time_up("yesterday"), None);
    assert_eq!(rfc3339(i64::MAX), "9999-12-31T23:59:59Z");
}

// ------------------------------------------------------------------ untrusted documents

fn arn() -> impl Strategy<Value = String> {
    "[0-9a-f]{8}".prop_map(|h| format!("arn:aws:ec2:eu-west-1:111111111111:instance/i-{h}"))
}

/// A statement in airf's shape, at a time within ±40 h of NOW (so some have expired).
fn airf_statement() -> impl Strategy<Value = Value> {
    (
        -40 * 3600i64..40 * 3600,
        prop::collection::vec(arn(), 1..4),
        any::<bool>(),
    )
        .prop_map(|(offset, arns, arn_equals)| {
            let op = if arn_equals {
                "ArnEquals"
            } else {
                "StringEquals"
            };
            json!({"Effect": "Deny", "Action": "*", "Resource": "*", "Condition": {
                "DateLessThan": {"aws:TokenIssueTime": rfc3339(NOW + offset)},
                op: {"ec2:SourceInstanceARN": arns}}})
        })
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(Value::from),
        "[ -~]{0,12}".prop_map(Value::String),
        Just(json!("*")),
        Just(json!("Allow")),
        Just(json!("Deny")),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("Effect".to_owned()),
                    Just("Action".to_owned()),
                    Just("Resource".to_owned()),
                    Just("Condition".to_owned()),
                    Just("NotAction".to_owned()),
                    "[A-Za-z:]{1,8}"
                ],
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn statement() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => airf_statement(),
        1 => any_json().prop_map(|mut v| {
            if let Value::Object(m) = &mut v { m.insert("Effect".into(), json!("Deny")); }
            v
        }),
        1 => any_json().prop_map(|mut v| {
            if let Value::Object(m) = &mut v { m.insert("Effect".into(), json!("Allow")); }
            v
        }),
        1 => any_json(),
    ]
}

/// Whether `doc` still denies what `statement` denied (foreign: present verbatim; airf's:
/// each instance covered at that time or later), for a statement still in force.
fn still_denied(after: &Boundary, rendered: &[Value], statement: &Value) -> bool {
    if statement.get("Effect") != Some(&json!("Deny")) {
        return true;
    }
    let Some(object) = statement.as_object() else {
        return true;
    };
    match revocation(object) {
        Some((before, arns)) => {
            !in_force(before, NOW) || arns.iter().all(|a| after.covers(before, a))
        }
        None => rendered.contains(statement),
    }
}

proptest! {
    /// Whatever the current document holds, adding this containment and pruning gives a
    /// document that is within IAM's quota or reported full, keeps every Deny in force, adds
    /// the new one, and allows nothing but the single `Allow *`.
    #[test]
    fn any_existing_document_is_updated_safely(
        existing in prop::collection::vec(statement(), 0..30),
        as_object in any::<bool>(),
        new_arn in arn(),
        new_offset in 0i64..120,
    ) {
        let statement_field = if as_object && existing.len() == 1 && existing[0].is_object() {
            existing[0].clone()
        } else {
            Value::Array(existing.clone())
        };
        let doc = json!({"Version": "2012-10-17", "Statement": statement_field}).to_string();
        let mut b = Boundary::parse(&doc).expect("a policy object parses");
        b.add(NOW + new_offset, &new_arn);
        b.prune(NOW);
        match b.document() {
            Err(Full { chars }) => prop_assert!(chars > MAX_CHARS),
            Ok(out) => {
                prop_assert!(policy_chars(&out) <= MAX_CHARS);
                let rendered = statements(&out);
                let allows: Vec<Value> = rendered
                    .iter()
                    .filter(|s| s.get("Effect") != Some(&json!("Deny")))
                    .cloned()
                    .collect();
                prop_assert_eq!(
                    allows,
                    vec![json!({"Effect": "Allow", "Action": "*", "Resource": "*"})]
                );
                let reread = Boundary::parse(&out).expect("reads back");
                prop_assert_eq!(&reread, &b);
                prop_assert!(reread.covers(NOW + new_offset, &new_arn));
                for s in &existing {
                    prop_assert!(still_denied(&reread, &rendered, s), "dropped {}", s);
                }
            }
        }
    }

    /// Any text at all: parsing never panics, and what parses renders to a document that
    /// parses back to the same boundary.
    #[test]
    fn any_text_parses_or_is_refused(text in ".{0,200}") {
        if let Ok(b) = Boundary::parse(&text)
            && let Ok(doc) = b.document()
        {
            prop_assert_eq!(Boundary::parse(&doc).ok(), Some(b));
        }
    }
}
