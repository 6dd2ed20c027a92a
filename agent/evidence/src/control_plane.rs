//! The control-plane evidence of one instance: what the AWS APIs said about it before the
//! responders changed anything (its description, network interfaces, security groups, route
//! tables, IAM role and policies, console output and screenshot, CloudTrail events, flow-log
//! configuration). The controller stores each answer as an object in the instance's case folder
//! and lists them, hashed, in a [`ControlPlaneManifest`] written last; `airf-agent verify` checks
//! every object against it.
//!
//! A call AWS refused (access denied, an API the partition lacks) is listed with its error and no
//! object: what could not be read is part of the record, and never fails the collection.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::value::{Extra, Value};

/// Current major version of [`ControlPlaneManifest`]; the rules of
/// [`crate::manifest::SCHEMA_VERSION`] apply.
pub const SCHEMA_VERSION: u32 = 1;
/// The manifest's `kind`.
pub const KIND: &str = "control_plane";
/// The manifest's object name, in the collection's folder.
pub const MANIFEST_NAME: &str = "control-plane.manifest.json";

/// The manifest stored last in a control-plane collection's folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlPlaneManifest {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Always [`KIND`].
    pub kind: String,
    /// The case.
    pub case: String,
    /// `i-…`.
    pub instance_id: String,
    /// The instance's account.
    pub account: String,
    /// The instance's region.
    pub region: String,
    /// Who collected it: the controller's version and the execution.
    pub made_by: String,
    /// UTC, RFC 3339: the first call.
    pub started_at: String,
    /// UTC, RFC 3339: the last call.
    pub finished_at: String,
    /// How far back and how deep CloudTrail was read.
    pub cloudtrail: TrailBounds,
    /// Every call, in the order made: its object, or its error.
    pub objects: Vec<ControlPlaneObject>,
    /// Fields a newer writer added.
    #[serde(flatten)]
    pub extra: Extra,
}

/// The bounds of the CloudTrail `LookupEvents` reads (2 requests per second per account and
/// region, 50 events a page): events outside them were not read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrailBounds {
    /// UTC, RFC 3339: `StartTime` of every lookup.
    pub start_time: String,
    /// UTC, RFC 3339: `EndTime` of every lookup.
    pub end_time: String,
    /// `MaxResults` of each page.
    pub page_size: u32,
    /// Pages read at most per lookup; a lookup that had more says so (`truncated`).
    pub max_pages: u32,
    /// Access key ids looked up at most.
    pub max_access_keys: u32,
    /// Milliseconds between two requests.
    pub pace_ms: u64,
    /// Lookups that stopped at `max_pages` with events left.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub truncated: Vec<String>,
}

/// One API call and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlPlaneObject {
    /// Object name in the folder (`describe-instances.json`, `console-screenshot.png`, …);
    /// unique in the manifest, also for a failed call.
    pub name: String,
    /// The call.
    pub call: ApiCall,
    /// UTC, RFC 3339: when the answer came.
    pub collected_at: String,
    /// The stored answer; absent when the call failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored: Option<StoredAnswer>,
    /// Why there is no answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<CallError>,
}

/// An AWS API call: its service, operation and parameters (as the API reference names them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiCall {
    /// `ec2`, `iam`, `cloudtrail`.
    pub service: String,
    /// `DescribeInstances`, …; several calls of one object are joined with `+`.
    pub operation: String,
    /// The request's parameters.
    #[serde(default)]
    pub parameters: Value,
}

/// Where an answer is stored and what it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredAnswer {
    /// The object's key in the bucket.
    pub key: String,
    /// Bytes.
    pub size: u64,
    /// SHA-256, lowercase hex.
    pub sha256: String,
    /// `application/json`, `image/png`.
    pub content_type: String,
}

/// A call AWS refused or failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallError {
    /// The error code (`UnauthorizedOperation`, `AccessDenied`, `UnsupportedOperation`, …) or
    /// `error` when there is none.
    pub code: String,
    /// AWS's message.
    pub message: String,
}

/// The one field read first, so a newer major version is refused by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Head {
    /// The manifest's major version.
    pub schema_version: u32,
}

/// Why a control-plane manifest cannot be read; `E` is the serde format's error.
#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError<E> {
    /// Not in the format, or missing fields.
    #[error("not a valid airf control-plane manifest: {0}")]
    Invalid(E),
    /// Written by a newer major version.
    #[error(
        "control-plane manifest schema version {found} is newer than this reader understands (schema version {SCHEMA_VERSION}); read it with a newer airf release"
    )]
    TooNew {
        /// The manifest's version.
        found: u32,
    },
    /// Well-formed, but not a manifest airf writes.
    #[error("not a valid airf control-plane manifest: {0}")]
    Inconsistent(String),
}

/// Whether `s` is 64 lowercase hex digits.
fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether `name` is a plain object name: no folder, nothing a path could climb out with.
pub fn is_object_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name != MANIFEST_NAME
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

impl ControlPlaneManifest {
    /// Reads a manifest (untrusted bytes) in any serde format, as
    /// [`crate::manifest::Manifest::decode`] does, then checks it is consistent
    /// ([`Self::check`]).
    ///
    /// ```
    /// # use airf_evidence::control_plane::{ControlPlaneManifest, ControlPlaneError};
    /// # fn read(bytes: &[u8]) -> Result<ControlPlaneManifest, ControlPlaneError<serde_json::Error>> {
    /// ControlPlaneManifest::decode(serde_json::from_slice(bytes), || serde_json::from_slice(bytes))
    /// # }
    /// ```
    pub fn decode<E>(
        head: Result<Head, E>,
        full: impl FnOnce() -> Result<ControlPlaneManifest, E>,
    ) -> Result<ControlPlaneManifest, ControlPlaneError<E>> {
        let head = head.map_err(ControlPlaneError::Invalid)?;
        if head.schema_version > SCHEMA_VERSION {
            return Err(ControlPlaneError::TooNew {
                found: head.schema_version,
            });
        }
        let manifest = full().map_err(ControlPlaneError::Invalid)?;
        manifest.check().map_err(ControlPlaneError::Inconsistent)?;
        Ok(manifest)
    }

    /// What a reader relies on: the kind, plain and unique object names, every entry either
    /// stored (under a key ending in its name, with a SHA-256) or failed with an error.
    pub fn check(&self) -> Result<(), String> {
        if self.kind != KIND {
            return Err(format!("kind {:?}, not {KIND:?}", self.kind));
        }
        let mut names = BTreeSet::new();
        for o in &self.objects {
            if !is_object_name(&o.name) {
                return Err(format!("object name {:?} is not a plain file name", o.name));
            }
            if !names.insert(o.name.as_str()) {
                return Err(format!("object {} is listed twice", o.name));
            }
            match (&o.stored, &o.error) {
                (Some(s), None) => {
                    if !s.key.ends_with(&format!("/{}", o.name)) && s.key != o.name {
                        return Err(format!(
                            "object {} is stored under key {}, which does not end in its name",
                            o.name, s.key
                        ));
                    }
                    if !is_sha256(&s.sha256) {
                        return Err(format!("object {} has no SHA-256", o.name));
                    }
                }
                (None, Some(_)) => {}
                _ => {
                    return Err(format!(
                        "object {} must have either a stored answer or an error",
                        o.name
                    ));
                }
            }
        }
        Ok(())
    }

    /// The stored objects, in order.
    pub fn stored(&self) -> impl Iterator<Item = (&ControlPlaneObject, &StoredAnswer)> {
        self.objects
            .iter()
            .filter_map(|o| o.stored.as_ref().map(|s| (o, s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type Parsed = Result<ControlPlaneManifest, ControlPlaneError<serde_json::Error>>;

    fn parse(bytes: &[u8]) -> Parsed {
        ControlPlaneManifest::decode(serde_json::from_slice(bytes), || {
            serde_json::from_slice(bytes)
        })
    }

    const FIXTURE: &[u8] = include_bytes!("fixtures/control-plane-1.json");

    #[test]
    fn the_fixture_round_trips() {
        let m = parse(FIXTURE).unwrap();
        assert_eq!(m.objects.len(), 3);
        assert_eq!(m.stored().count(), 2);
        assert_eq!(
            m.objects[2].error.as_ref().map(|e| e.code.as_str()),
            Some("UnauthorizedOperation")
        );
        let again = serde_json::to_vec(&m).unwrap();
        assert_eq!(parse(&again).unwrap(), m);
        let written: serde_json::Value = serde_json::from_slice(&again).unwrap();
        let fixture: serde_json::Value = serde_json::from_slice(FIXTURE).unwrap();
        assert_eq!(written, fixture);
    }

    #[test]
    fn a_newer_minor_version_keeps_its_fields_and_a_newer_major_is_refused() {
        let mut json: serde_json::Value = serde_json::from_slice(FIXTURE).unwrap();
        json["retention_days"] = 365.into();
        json["objects"][0]["new_field"] = true.into();
        let m = parse(&serde_json::to_vec(&json).unwrap()).unwrap();
        assert_eq!(m.extra.get("retention_days"), Some(&Value::Unsigned(365)));
        json["schema_version"] = 2.into();
        json["objects"] = "renamed".into();
        let err = parse(&serde_json::to_vec(&json).unwrap()).unwrap_err();
        assert!(
            matches!(err, ControlPlaneError::TooNew { found: 2 }),
            "{err}"
        );
        assert!(err.to_string().contains("schema version 2"), "{err}");
    }

    /// Each rule of [`ControlPlaneManifest::check`], broken in turn.
    #[test]
    fn inconsistent_manifests_are_refused_naming_the_object() {
        let base: serde_json::Value = serde_json::from_slice(FIXTURE).unwrap();
        type Break = fn(&mut serde_json::Value);
        let broken: [(&str, Break); 7] = [
            ("not \"control_plane\"", |j| j["kind"] = "memory".into()),
            ("not a plain file name", |j| {
                j["objects"][0]["name"] = "../x.json".into()
            }),
            ("not a plain file name", |j| {
                j["objects"][0]["name"] = MANIFEST_NAME.into()
            }),
            ("listed twice", |j| {
                j["objects"][1]["name"] = j["objects"][0]["name"].clone()
            }),
            ("does not end in its name", |j| {
                j["objects"][0]["stored"]["key"] = "ev/IR-1/i-1/cp/other.json".into()
            }),
            ("has no SHA-256", |j| {
                j["objects"][0]["stored"]["sha256"] = "ABC".into()
            }),
            ("either a stored answer or an error", |j| {
                j["objects"][2]["stored"] = j["objects"][0]["stored"].clone()
            }),
        ];
        for (why, breaks) in broken {
            let mut json = base.clone();
            breaks(&mut json);
            let err = parse(&serde_json::to_vec(&json).unwrap()).unwrap_err();
            assert!(
                matches!(&err, ControlPlaneError::Inconsistent(m) if m.contains(why)),
                "{why}: {err}"
            );
        }
    }

    fn object() -> impl Strategy<Value = ControlPlaneObject> {
        (
            "[a-z0-9][a-z0-9._-]{0,20}",
            "[A-Za-z]{1,30}",
            proptest::option::of(("[0-9a-f]{64}", any::<u64>())),
            "\\PC{0,40}",
        )
            .prop_map(|(name, operation, stored, message)| ControlPlaneObject {
                call: ApiCall {
                    service: "ec2".into(),
                    operation,
                    parameters: Value::Object(
                        [("InstanceIds".to_owned(), Value::String(message.clone()))].into(),
                    ),
                },
                collected_at: "2026-12-02T17:00:00Z".into(),
                error: stored.is_none().then(|| CallError {
                    code: "AccessDenied".into(),
                    message,
                }),
                stored: stored.map(|(sha256, size)| StoredAnswer {
                    key: format!("ev/IR-1/i-1/control-plane/r/{name}"),
                    size,
                    sha256,
                    content_type: "application/json".into(),
                }),
                name,
            })
    }

    fn manifest() -> impl Strategy<Value = ControlPlaneManifest> {
        proptest::collection::vec(object(), 0..8).prop_map(|mut objects| {
            let mut seen = BTreeSet::new();
            objects.retain(|o| is_object_name(&o.name) && seen.insert(o.name.clone()));
            let mut m: ControlPlaneManifest = serde_json::from_slice(FIXTURE).unwrap();
            m.objects = objects;
            m
        })
    }

    proptest! {
        /// Any bytes: an answer, never a panic.
        #[test]
        fn any_bytes_are_answered(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse(&bytes);
        }

        /// The fixture with any one byte changed: read only when still consistent.
        #[test]
        fn a_changed_byte_is_read_or_refused(at in 0..FIXTURE.len(), to in any::<u8>()) {
            let mut bytes = FIXTURE.to_vec();
            bytes[at] = to;
            if let Ok(m) = parse(&bytes) {
                prop_assert!(m.check().is_ok());
            }
        }

        /// Whatever airf writes, it reads back the same.
        #[test]
        fn written_manifests_read_back(m in manifest()) {
            let bytes = serde_json::to_vec_pretty(&m).unwrap();
            prop_assert_eq!(parse(&bytes).unwrap(), m);
        }

        /// A name that could leave the folder is never accepted.
        #[test]
        fn names_never_climb(name in "\\PC{0,40}") {
            if is_object_name(&name) {
                prop_assert!(!name.contains('/') && !name.contains('\\') && !name.starts_with('.'));
            }
        }
    }
}
