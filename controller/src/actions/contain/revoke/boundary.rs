//! The document of airf's revocation boundary (`AirfRevokedSessions`, template 4): one
//! `Allow *` and one `Deny *` per containment minute, on sessions of the contained instances
//! issued before that minute.
//!
//! As a permissions boundary it can only take permissions away: a boundary grants nothing, so
//! whatever this document says, a role keeps at most what its identity policies allow. That is
//! why the controller may rewrite it (finding 8 of issue 12).
//!
//! The document the controller reads back is untrusted input (anyone with IAM rights can edit
//! the policy): [`Boundary::parse`] keeps every Deny it does not recognize as it is, drops every
//! Allow (the one `Allow *` is written back), and never narrows a revocation it recognizes.

use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// IAM's quota for a managed policy document, in characters other than whitespace
/// (<https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html>).
pub const MAX_CHARS: usize = 6_144;

/// How long a revocation must stay: the longest a credential issued before it can live, plus a
/// margin for clocks and IAM's propagation. Instance-profile credentials are *not* bounded by
/// the role's 12-hour `MaxSessionDuration` ("IAM role credentials provided by Amazon EC2
/// instances assigned to the role are not subject to the specified maximum session duration",
/// IAM API reference, UpdateRole), and EC2 documents no lifetime for them; the only documented
/// ceiling for any temporary credential is 129,600 s, 36 hours ("Disabling permissions for
/// temporary security credentials", IAM User Guide). So 36 h + 15 min, not 12 h.
pub const LIFETIME_SECS: i64 = 36 * 3600 + 15 * 60;

const TOKEN_ISSUE_TIME: &str = "aws:TokenIssueTime";
const SOURCE_INSTANCE: &str = "ec2:SourceInstanceARN";

/// Why the current document cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not JSON at all.
    #[error("the boundary policy is not JSON: {0}")]
    NotJson(String),
    /// JSON, but not a policy object.
    #[error("the boundary policy is not a JSON object with a Statement")]
    NotAPolicy,
}

/// The document would exceed [`MAX_CHARS`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the revocation boundary would be {chars} characters, over IAM's {MAX_CHARS}")]
pub struct Full {
    /// Size the document would have.
    pub chars: usize,
}

/// The boundary's content.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Boundary {
    /// Revocations: sessions issued before this time (Unix seconds) from these instances
    /// (instance ARNs) are denied.
    revocations: BTreeMap<i64, BTreeSet<String>>,
    /// Deny statements airf did not write, kept as they were.
    foreign: Vec<Value>,
}

impl Boundary {
    /// Reads a policy document. Revocations are recognized only in airf's exact shape; any other
    /// Deny is kept verbatim, and every Allow is dropped (a boundary with `Allow *` is not
    /// widened by dropping other Allows; [`Boundary::document`] writes the `Allow *` back).
    pub fn parse(document: &str) -> Result<Self, ParseError> {
        let value: Value =
            serde_json::from_str(document).map_err(|e| ParseError::NotJson(e.to_string()))?;
        let statements = match value.get("Statement") {
            Some(Value::Array(list)) => list.clone(),
            Some(one @ Value::Object(_)) => vec![one.clone()],
            _ => return Err(ParseError::NotAPolicy),
        };
        let mut boundary = Boundary::default();
        for statement in statements {
            let Some(object) = statement.as_object() else {
                continue; // IAM stores no such statement; it denies nothing
            };
            // An Allow is written back once as Allow *; a statement with no valid effect
            // denies nothing.
            if object.get("Effect").and_then(Value::as_str) != Some("Deny") {
                continue;
            }
            match revocation(object) {
                Some((before, instances)) => {
                    boundary
                        .revocations
                        .entry(before)
                        .or_default()
                        .extend(instances);
                }
                None => {
                    if !boundary.foreign.contains(&statement) {
                        boundary.foreign.push(statement);
                    }
                }
            }
        }
        Ok(boundary)
    }

    /// Denies sessions of `instance_arn` issued before `before` (Unix seconds).
    pub fn add(&mut self, before: i64, instance_arn: &str) {
        self.revocations
            .entry(before)
            .or_default()
            .insert(instance_arn.to_owned());
    }

    /// Whether sessions of `instance_arn` issued before `before` are already denied: a
    /// revocation of that instance at `before` or later denies a superset.
    pub fn covers(&self, before: i64, instance_arn: &str) -> bool {
        self.revocations
            .range(before..)
            .any(|(_, instances)| instances.contains(instance_arn))
    }

    /// Whether every revocation of `other` still in force at `now` is covered here.
    pub fn covers_all(&self, other: &Boundary, now: i64) -> bool {
        other
            .entries()
            .all(|(before, instance)| !in_force(before, now) || self.covers(before, instance))
    }

    /// Adds `other`'s revocations (not its foreign statements: those are taken from the
    /// current version only, so a Deny a person removed is not brought back).
    pub fn absorb(&mut self, other: &Boundary) {
        for (before, instance) in other.entries() {
            self.add(before, instance);
        }
    }

    /// Drops revocations no credential can outlive any more.
    pub fn prune(&mut self, now: i64) {
        self.revocations.retain(|before, _| in_force(*before, now));
    }

    /// Every (time, instance) revocation.
    pub fn entries(&self) -> impl Iterator<Item = (i64, &str)> {
        self.revocations
            .iter()
            .flat_map(|(before, instances)| instances.iter().map(move |i| (*before, i.as_str())))
    }

    /// The policy document, or [`Full`] when IAM would refuse its size.
    pub fn document(&self) -> Result<String, Full> {
        let mut statements = vec![json!({"Effect": "Allow", "Action": "*", "Resource": "*"})];
        for (before, instances) in &self.revocations {
            if instances.is_empty() {
                continue;
            }
            statements.push(json!({
                "Effect": "Deny",
                "Action": "*",
                "Resource": "*",
                "Condition": {
                    "DateLessThan": { TOKEN_ISSUE_TIME: rfc3339(*before) },
                    "ArnEquals": { SOURCE_INSTANCE: instances.iter().collect::<Vec<_>>() }
                }
            }));
        }
        statements.extend(self.foreign.iter().cloned());
        let document = json!({"Version": "2012-10-17", "Statement": statements}).to_string();
        let chars = policy_chars(&document);
        if chars > MAX_CHARS {
            return Err(Full { chars });
        }
        Ok(document)
    }
}

/// Whether a revocation at `before` must still be kept at `now`.
pub fn in_force(before: i64, now: i64) -> bool {
    before.saturating_add(LIFETIME_SECS) > now
}

/// The size IAM counts: characters other than whitespace.
pub fn policy_chars(document: &str) -> usize {
    document.chars().filter(|c| !c.is_whitespace()).count()
}

/// `2026-11-29T18:00:00Z` for Unix seconds; times outside `time`'s range are clamped (they only
/// arrive from a hand-edited document, and a clamped far-future time still denies).
pub fn rfc3339(unix: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp(unix).unwrap_or(if unix < 0 {
        OffsetDateTime::UNIX_EPOCH
    } else {
        time::macros::datetime!(9999-12-31 23:59:59 UTC)
    });
    t.format(&Rfc3339)
        .unwrap_or_else(|_| "9999-12-31T23:59:59Z".to_owned())
}

/// Unix seconds of an RFC 3339 time, rounded *up* to the second: a revocation read from a
/// document is never narrowed by re-writing it.
pub fn parse_time_up(text: &str) -> Option<i64> {
    let t = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    let secs = t.unix_timestamp();
    Some(if t.nanosecond() > 0 { secs + 1 } else { secs })
}

/// A revocation in airf's exact shape: `Deny` `*` on `*`, conditioned on exactly
/// `DateLessThan aws:TokenIssueTime` and `ArnEquals`/`StringEquals ec2:SourceInstanceARN`.
fn revocation(statement: &Map<String, Value>) -> Option<(i64, Vec<String>)> {
    let allowed = ["Sid", "Effect", "Action", "Resource", "Condition"];
    if statement.keys().any(|k| !allowed.contains(&k.as_str())) {
        return None;
    }
    if !is_star(statement.get("Action")?) || !is_star(statement.get("Resource")?) {
        return None;
    }
    let condition = statement.get("Condition")?.as_object()?;
    if condition.len() != 2 {
        return None;
    }
    let before = single(condition.get("DateLessThan")?, TOKEN_ISSUE_TIME)?;
    let before = parse_time_up(before.as_str()?)?;
    let arns = condition
        .get("ArnEquals")
        .or_else(|| condition.get("StringEquals"))?;
    let arns = match single(arns, SOURCE_INSTANCE)? {
        Value::String(one) => vec![one.clone()],
        Value::Array(list) if !list.is_empty() => list
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()?,
        _ => return None,
    };
    // Written back under ArnEquals, so only instance ARNs are taken as airf's.
    if !arns
        .iter()
        .all(|a| a.starts_with("arn:") && a.contains(":instance/"))
    {
        return None;
    }
    Some((before, arns))
}

/// The value of an object that has exactly one key, `key`.
fn single<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    let object = value.as_object()?;
    if object.len() != 1 {
        return None;
    }
    object.get(key)
}

fn is_star(value: &Value) -> bool {
    match value {
        Value::String(s) => s == "*",
        Value::Array(list) => list.len() == 1 && list.first().and_then(Value::as_str) == Some("*"),
        _ => false,
    }
}

#[cfg(test)]
mod tests;
