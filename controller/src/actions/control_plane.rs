//! `control_plane`: what the AWS APIs say about the instance, stored in its case folder before
//! anything changes it. The workflow runs it right after the claim, before `prepare` gives the
//! instance airf's instance profile and before any containment, so the case shows the state the
//! responders found, and what they changed is the difference.
//!
//! Read, in the instance's account and region with the member role (read-only calls):
//! DescribeInstances (with the IMDS settings, `metadataOptions`, also stored on their own), its
//! interfaces (DescribeNetworkInterfaces), their security groups and rules
//! (DescribeSecurityGroups), the VPC's route tables (DescribeRouteTables), the flow-log
//! configuration of the VPC, subnets and interfaces (DescribeFlowLogs), the instance profile's
//! role with its attached and inline policies (GetInstanceProfile, GetRole,
//! ListAttachedRolePolicies, GetPolicy, GetPolicyVersion of the default version,
//! ListRolePolicies, GetRolePolicy), the console output (GetConsoleOutput, `Latest`) and a
//! screenshot (GetConsoleScreenshot, `WakeUp` false, stored as PNG), and CloudTrail's recent
//! events ([`TRAIL_HOURS`]).
//!
//! CloudTrail: LookupEvents by `ResourceName` = the instance id (calls on the instance), by
//! `Username` = the instance id (calls made with the instance profile's credentials: EC2 names
//! their role session after the instance, wherever they are used from), and by `AccessKeyId` for
//! each distinct access key those events name (at most [`MAX_ACCESS_KEYS`]), so the record shows
//! every key the role issued to the instance in the window. LookupEvents allows 2 requests per
//! second per account and region and 50 events a page: requests are [`PACE`] apart, at most
//! [`MAX_PAGES`] pages per lookup; the bounds, and every lookup that had more, are in the
//! manifest.
//!
//! Each answer is stored as JSON (the screenshot as PNG) with `If-None-Match: *` and its SHA-256
//! checksum, under `<prefix>/<case>/<instance>/control-plane/<time>/`, and listed with its size,
//! SHA-256, call and parameters in `control-plane.manifest.json`, written last
//! ([`airf_evidence::control_plane`]); `airf-agent verify` checks every object against it. A call
//! AWS refuses (access denied, no screenshot on this instance type) is recorded with its error
//! and never fails the step. A retried step writes a new folder (its own time).

use crate::cloud::{Cloud, ControlPlaneAnswer, ControlPlaneCall, PutNew};
use crate::config::Config;
use crate::custody::{JSON, s3_uri, sha256_hex};
use crate::error::{Error, Result};
use crate::model::Subject;
use airf_evidence::control_plane::{
    self as schema, ApiCall, CallError, ControlPlaneManifest, ControlPlaneObject, StoredAnswer,
    TrailBounds,
};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::time::Duration;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// CloudTrail is read this many hours back from the step's start.
pub const TRAIL_HOURS: i64 = 24;
/// Events per LookupEvents page (the API's maximum).
pub const PAGE_SIZE: i32 = 50;
/// Pages per lookup at most (250 events).
pub const MAX_PAGES: u32 = 5;
/// Access keys looked up at most.
pub const MAX_ACCESS_KEYS: usize = 5;
/// Between two LookupEvents requests: the API allows 2 a second per account and region.
pub const PACE: Duration = Duration::from_millis(500);
/// The screenshot's content type.
pub const PNG: &str = "image/png";
/// The decoded console output's content type.
pub const TEXT: &str = "text/plain; charset=utf-8";

/// The step's output, copied into the instance's entry of the execution's output: only the
/// count, `{"stored": N}`, because 500 instances' entries must fit in Step Functions' 256 KiB
/// and there were 38 bytes per instance left (the fleet test measures it). Everything else is in
/// the manifest, `<prefix>/<case>/<instance>/control-plane/<time>/control-plane.manifest.json`,
/// and the step's log (the manifest's address, each refused call, each lookup cut at its
/// bounds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlPlaneOutcome {
    /// Objects stored.
    pub stored: usize,
    /// Calls AWS refused, `Operation: Code` (in the manifest and the log, not in the output).
    #[serde(skip)]
    pub refused: Vec<String>,
    /// CloudTrail lookups that had more events than the bounds allowed (likewise).
    #[serde(skip)]
    pub truncated: Vec<String>,
}

fn rfc3339(t: OffsetDateTime) -> Result<String> {
    t.format(&Rfc3339)
        .map_err(|e| Error::failed(format!("formatting a time: {e}")))
}

fn now_utc() -> Result<String> {
    rfc3339(OffsetDateTime::now_utc())
}

/// `value` at `path`, where a number in the path is an array index.
fn at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter()
        .try_fold(value, |v, p| match p.parse::<usize>() {
            Ok(i) => v.get(i),
            Err(_) => v.get(*p),
        })
}

/// The array at `path`; an absent or empty (`null`) list is empty.
fn list<'a>(value: &'a Value, path: &[&str]) -> &'a [Value] {
    at(value, path)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn text<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(value, path).and_then(Value::as_str)
}

/// What the rest of the collection needs from DescribeInstances' answer.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Described {
    pub vpc_id: Option<String>,
    pub subnet_ids: Vec<String>,
    pub interface_ids: Vec<String>,
    pub group_ids: Vec<String>,
    /// The instance profile's name (the last part of its ARN's path).
    pub profile_name: Option<String>,
    /// `metadataOptions`.
    pub metadata_options: Option<Value>,
}

fn push_new(list: &mut Vec<String>, value: Option<&str>) {
    if let Some(v) = value.filter(|v| !v.is_empty())
        && !list.iter().any(|x| x == v)
    {
        list.push(v.to_owned());
    }
}

/// Reads DescribeInstances' answer (EC2's XML in JSON).
pub fn described(answer: &Value) -> Described {
    let Some(instance) = at(
        answer,
        &[
            "DescribeInstancesResponse",
            "reservationSet",
            "0",
            "instancesSet",
            "0",
        ],
    ) else {
        return Described::default();
    };
    let mut d = Described {
        vpc_id: text(instance, &["vpcId"]).map(str::to_owned),
        profile_name: text(instance, &["iamInstanceProfile", "arn"])
            .and_then(|arn| arn.rsplit('/').next())
            .filter(|n| !n.is_empty())
            .map(str::to_owned),
        metadata_options: at(instance, &["metadataOptions"]).cloned(),
        ..Described::default()
    };
    push_new(&mut d.subnet_ids, text(instance, &["subnetId"]));
    for eni in list(instance, &["networkInterfaceSet"]) {
        push_new(&mut d.interface_ids, text(eni, &["networkInterfaceId"]));
        push_new(&mut d.subnet_ids, text(eni, &["subnetId"]));
        for g in list(eni, &["groupSet"]) {
            push_new(&mut d.group_ids, text(g, &["groupId"]));
        }
    }
    for g in list(instance, &["groupSet"]) {
        push_new(&mut d.group_ids, text(g, &["groupId"]));
    }
    d
}

/// The collection in progress: where objects go and what the manifest will list.
struct Collector<'a, C: Cloud> {
    cloud: &'a C,
    config: &'a Config,
    subject: &'a Subject,
    folder: String,
    objects: Vec<ControlPlaneObject>,
    /// Whether a LookupEvents request was made already (the next one waits [`PACE`]).
    paced: bool,
    pace: Duration,
}

fn parameters(call: &ControlPlaneCall) -> Result<airf_evidence::Value> {
    serde_json::from_value(call.parameters())
        .map_err(|e| Error::failed(format!("recording the parameters: {e}")))
}

impl<C: Cloud> Collector<'_, C> {
    async fn ask(&mut self, call: &ControlPlaneCall) -> Result<ControlPlaneAnswer> {
        if matches!(call, ControlPlaneCall::LookupEvents { .. }) {
            if self.paced && !self.pace.is_zero() {
                tokio::time::sleep(self.pace).await;
            }
            self.paced = true;
        }
        self.cloud.control_plane(&self.subject.target, call).await
    }

    /// Stores `body` as `name` and lists it.
    async fn store(
        &mut self,
        name: &str,
        api: ApiCall,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<()> {
        let key = format!("{}{name}", self.folder);
        let bucket = &self.config.evidence_bucket;
        match self
            .cloud
            .put_new_object(bucket, &key, &body, content_type, &self.config.kms_key_id)
            .await?
        {
            PutNew::Created => {}
            PutNew::Exists => {
                return Err(Error::failed(format!(
                    "{} exists already; control-plane evidence is never replaced",
                    s3_uri(bucket, &key)
                )));
            }
            PutNew::Conflict => {
                return Err(Error::Aws {
                    operation: "s3:PutObject",
                    message: format!("{}: another write in flight (409)", s3_uri(bucket, &key)),
                    retryable: true,
                });
            }
        }
        self.objects.push(ControlPlaneObject {
            name: name.to_owned(),
            call: api,
            collected_at: now_utc()?,
            stored: Some(StoredAnswer {
                key,
                size: body.len() as u64,
                sha256: sha256_hex(&body),
                content_type: content_type.to_owned(),
            }),
            error: None,
        });
        Ok(())
    }

    async fn store_json(&mut self, name: &str, api: ApiCall, value: &Value) -> Result<()> {
        let mut body = serde_json::to_vec_pretty(value)
            .map_err(|e| Error::failed(format!("serializing {name}: {e}")))?;
        body.push(b'\n');
        self.store(name, api, body, JSON).await
    }

    fn refused(&mut self, name: &str, api: ApiCall, code: String, message: String) -> Result<()> {
        self.objects.push(ControlPlaneObject {
            name: name.to_owned(),
            call: api,
            collected_at: now_utc()?,
            stored: None,
            error: Some(CallError { code, message }),
        });
        Ok(())
    }

    /// One call stored as JSON under `name`; its answer, when there is one.
    async fn json(&mut self, name: &str, call: ControlPlaneCall) -> Result<Option<Value>> {
        let api = api_call(&call)?;
        match self.ask(&call).await? {
            ControlPlaneAnswer::Answer(v) => {
                self.store_json(name, api, &v).await?;
                Ok(Some(v))
            }
            ControlPlaneAnswer::Refused { code, message } => {
                self.refused(name, api, code, message)?;
                Ok(None)
            }
        }
    }

    /// Every page of one lookup, within the bounds, stored as `{"Pages": [...], "Truncated"}`;
    /// its events.
    async fn lookup(
        &mut self,
        name: &str,
        key: &str,
        value: &str,
        window: (&str, &str),
        truncated: &mut Vec<String>,
    ) -> Result<Vec<Value>> {
        let call = |next_token: Option<String>| ControlPlaneCall::LookupEvents {
            key: key.to_owned(),
            value: value.to_owned(),
            start: window.0.to_owned(),
            end: window.1.to_owned(),
            max_results: PAGE_SIZE,
            next_token,
        };
        let mut api = api_call(&call(None))?;
        let mut pages = Vec::new();
        let mut events = Vec::new();
        let mut next = None;
        let mut refusal = None;
        let mut more = false;
        for page in 0..MAX_PAGES {
            match self.ask(&call(next.clone())).await? {
                ControlPlaneAnswer::Answer(v) => {
                    events.extend(list(&v, &["Events"]).iter().cloned());
                    next = text(&v, &["NextToken"])
                        .filter(|t| !t.is_empty())
                        .map(str::to_owned);
                    pages.push(v);
                }
                ControlPlaneAnswer::Refused { code, message } => {
                    refusal = Some((code, message, page));
                    break;
                }
            }
            if next.is_none() {
                break;
            }
            more = page + 1 == MAX_PAGES;
        }
        if let airf_evidence::Value::Object(p) = &mut api.parameters {
            p.insert(
                "Pages".into(),
                airf_evidence::Value::Unsigned(pages.len() as u64),
            );
        }
        match refusal {
            Some((code, message, 0)) => {
                self.refused(name, api, code, message)?;
                return Ok(events);
            }
            Some((code, message, _)) => {
                let body = json!({"Pages": pages, "Truncated": true,
                                  "Error": {"Code": code, "Message": message}});
                truncated.push(format!("{key}={value} (page refused: {code})"));
                self.store_json(name, api, &body).await?;
            }
            None => {
                if more {
                    truncated.push(format!("{key}={value}"));
                }
                self.store_json(name, api, &json!({"Pages": pages, "Truncated": more}))
                    .await?;
            }
        }
        Ok(events)
    }
}

fn api_call(call: &ControlPlaneCall) -> Result<ApiCall> {
    Ok(ApiCall {
        service: call.service().to_owned(),
        operation: call.operation().to_owned(),
        parameters: parameters(call)?,
    })
}

/// The collection's folder: `<prefix>/<case>/<instance>/control-plane/<start time>/`.
pub fn folder(
    config: &Config,
    case_id: &str,
    subject: &Subject,
    started: OffsetDateTime,
) -> String {
    let prefix = config.evidence_prefix.trim_matches('/');
    let prefix = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    format!(
        "{prefix}{case_id}/{}/control-plane/{:04}{:02}{:02}T{:02}{:02}{:02}Z/",
        subject.target.instance_id,
        started.year(),
        u8::from(started.month()),
        started.day(),
        started.hour(),
        started.minute(),
        started.second()
    )
}

/// Collects and stores the instance's control-plane evidence; `now` is the step's start (RFC
/// 3339), `pace` the wait between LookupEvents requests ([`PACE`]).
pub async fn control_plane<C: Cloud>(
    cloud: &C,
    config: &Config,
    case_id: &str,
    subject: &Subject,
    execution_arn: &str,
    now: &str,
    pace: Duration,
) -> Result<ControlPlaneOutcome> {
    let started = OffsetDateTime::parse(now, &Rfc3339)
        .map_err(|e| Error::bad_input(format!("time {now:?}: {e}")))?;
    let instance_id = subject.target.instance_id.clone();
    let mut c = Collector {
        cloud,
        config,
        subject,
        folder: folder(config, case_id, subject, started),
        objects: Vec::new(),
        paced: false,
        pace,
    };
    use ControlPlaneCall::*;

    // The instance, and what the other calls need of it.
    let d = match c
        .json(
            "describe-instances.json",
            DescribeInstances {
                instance_id: instance_id.clone(),
            },
        )
        .await?
    {
        Some(answer) => described(&answer),
        None => Described::default(),
    };
    if let Some(options) = &d.metadata_options {
        let api = api_call(&DescribeInstances {
            instance_id: instance_id.clone(),
        })?;
        let imds = json!({"InstanceId": instance_id, "MetadataOptions": options});
        c.store_json("imds-settings.json", api, &imds).await?;
    }
    if !d.interface_ids.is_empty() {
        c.json(
            "network-interfaces.json",
            DescribeNetworkInterfaces {
                ids: d.interface_ids.clone(),
            },
        )
        .await?;
    }
    if !d.group_ids.is_empty() {
        c.json(
            "security-groups.json",
            DescribeSecurityGroups {
                ids: d.group_ids.clone(),
            },
        )
        .await?;
    }
    if let Some(vpc_id) = &d.vpc_id {
        c.json(
            "route-tables.json",
            DescribeRouteTables {
                vpc_id: vpc_id.clone(),
            },
        )
        .await?;
    }
    let resource_ids: Vec<String> = d
        .vpc_id
        .iter()
        .chain(&d.subnet_ids)
        .chain(&d.interface_ids)
        .cloned()
        .collect();
    if !resource_ids.is_empty() {
        c.json("flow-logs.json", DescribeFlowLogs { resource_ids })
            .await?;
    }

    // The role (an instance profile holds one at most) and its policies.
    if let Some(profile) = &d.profile_name
        && let Some(answer) = c
            .json(
                "instance-profile.json",
                GetInstanceProfile {
                    name: profile.clone(),
                },
            )
            .await?
    {
        let roles = list(
            &answer,
            &[
                "GetInstanceProfileResponse",
                "GetInstanceProfileResult",
                "InstanceProfile",
                "Roles",
            ],
        );
        if let Some(role) = roles.first().and_then(|r| text(r, &["RoleName"])) {
            role_evidence(&mut c, role).await?;
        }
    }

    // The console.
    if let Some(answer) = c
        .json(
            "console-output.json",
            GetConsoleOutput {
                instance_id: instance_id.clone(),
            },
        )
        .await?
        && let Some(b64) = text(&answer, &["GetConsoleOutputResponse", "output"])
    {
        let api = api_call(&GetConsoleOutput {
            instance_id: instance_id.clone(),
        })?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|e| Error::failed(format!("GetConsoleOutput: output not base64: {e}")))?;
        c.store("console-output.txt", api, bytes, TEXT).await?;
    }
    let screenshot = GetConsoleScreenshot {
        instance_id: instance_id.clone(),
    };
    let api = api_call(&screenshot)?;
    match c.ask(&screenshot).await? {
        ControlPlaneAnswer::Answer(v) => {
            match text(&v, &["GetConsoleScreenshotResponse", "imageData"]) {
                Some(b64) => {
                    let png = base64::engine::general_purpose::STANDARD
                        .decode(b64.trim())
                        .map_err(|e| {
                            Error::failed(format!(
                                "GetConsoleScreenshot: imageData not base64: {e}"
                            ))
                        })?;
                    c.store("console-screenshot.png", api, png, PNG).await?;
                }
                None => c.refused(
                    "console-screenshot.png",
                    api,
                    "NoImageData".into(),
                    "the answer had no imageData".into(),
                )?,
            }
        }
        ControlPlaneAnswer::Refused { code, message } => {
            c.refused("console-screenshot.png", api, code, message)?;
        }
    }

    // CloudTrail.
    let end = rfc3339(started)?;
    let start = rfc3339(started - time::Duration::hours(TRAIL_HOURS))?;
    let window = (start.as_str(), end.as_str());
    let mut truncated = Vec::new();
    c.lookup(
        "cloudtrail-instance.json",
        "ResourceName",
        &instance_id,
        window,
        &mut truncated,
    )
    .await?;
    let session = c
        .lookup(
            "cloudtrail-instance-session.json",
            "Username",
            &instance_id,
            window,
            &mut truncated,
        )
        .await?;
    let mut keys = Vec::new();
    for e in &session {
        push_new(&mut keys, text(e, &["AccessKeyId"]));
    }
    let dropped = keys.len().saturating_sub(MAX_ACCESS_KEYS);
    if dropped > 0 {
        truncated.push(format!(
            "{dropped} more access keys than the {MAX_ACCESS_KEYS} looked up"
        ));
    }
    for (i, key) in keys.iter().take(MAX_ACCESS_KEYS).enumerate() {
        c.lookup(
            &format!("cloudtrail-access-key-{}.json", i + 1),
            "AccessKeyId",
            key,
            window,
            &mut truncated,
        )
        .await?;
    }

    // The manifest, last.
    let manifest = ControlPlaneManifest {
        schema_version: schema::SCHEMA_VERSION,
        kind: schema::KIND.to_owned(),
        case: case_id.to_owned(),
        instance_id: instance_id.clone(),
        account: subject.target.account.clone(),
        region: subject.target.region.clone(),
        made_by: format!(
            "airf-controller {} (execution {execution_arn})",
            env!("CARGO_PKG_VERSION")
        ),
        started_at: end.clone(),
        finished_at: now_utc()?,
        cloudtrail: TrailBounds {
            start_time: start,
            end_time: end,
            page_size: PAGE_SIZE.unsigned_abs(),
            max_pages: MAX_PAGES,
            max_access_keys: MAX_ACCESS_KEYS as u32,
            pace_ms: u64::try_from(pace.as_millis()).unwrap_or(u64::MAX),
            truncated: truncated.clone(),
        },
        objects: c.objects,
        extra: Default::default(),
    };
    manifest.check().map_err(|e| {
        Error::failed(format!(
            "internal: the control-plane manifest is inconsistent: {e}"
        ))
    })?;
    let mut body = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| Error::failed(format!("serializing the control-plane manifest: {e}")))?;
    body.push(b'\n');
    let key = format!("{}{}", c.folder, schema::MANIFEST_NAME);
    let bucket = &config.evidence_bucket;
    match cloud
        .put_new_object(bucket, &key, &body, JSON, &config.kms_key_id)
        .await?
    {
        PutNew::Created => {}
        PutNew::Exists => {
            return Err(Error::failed(format!(
                "{} exists already; control-plane evidence is never replaced",
                s3_uri(bucket, &key)
            )));
        }
        PutNew::Conflict => {
            return Err(Error::Aws {
                operation: "s3:PutObject",
                message: format!("{}: another write in flight (409)", s3_uri(bucket, &key)),
                retryable: true,
            });
        }
    }
    let outcome = ControlPlaneOutcome {
        stored: manifest.stored().count(),
        refused: manifest
            .objects
            .iter()
            .filter_map(|o| {
                o.error
                    .as_ref()
                    .map(|e| format!("{}: {}", o.call.operation, e.code))
            })
            .collect(),
        truncated,
    };
    tracing::info!(
        manifest = %s3_uri(bucket, &key),
        stored = outcome.stored,
        refused = ?outcome.refused,
        truncated = ?outcome.truncated,
        "control-plane evidence stored"
    );
    Ok(outcome)
}

/// The role, its attached (managed: the policy and its default version's document) and inline
/// policies.
async fn role_evidence<C: Cloud>(c: &mut Collector<'_, C>, role: &str) -> Result<()> {
    use ControlPlaneCall::*;
    c.json(
        "role.json",
        GetRole {
            name: role.to_owned(),
        },
    )
    .await?;
    if let Some(attached) = c
        .json(
            "role-attached-policies.json",
            ListAttachedRolePolicies {
                role: role.to_owned(),
            },
        )
        .await?
    {
        let arns: Vec<String> = list(
            &attached,
            &[
                "ListAttachedRolePoliciesResponse",
                "ListAttachedRolePoliciesResult",
                "AttachedPolicies",
            ],
        )
        .iter()
        .filter_map(|p| text(p, &["PolicyArn"]).map(str::to_owned))
        .collect();
        for (i, arn) in arns.iter().enumerate() {
            let n = i + 1;
            let Some(policy) = c
                .json(
                    &format!("managed-policy-{n}.json"),
                    GetPolicy { arn: arn.clone() },
                )
                .await?
            else {
                continue;
            };
            if let Some(version) = text(
                &policy,
                &[
                    "GetPolicyResponse",
                    "GetPolicyResult",
                    "Policy",
                    "DefaultVersionId",
                ],
            ) {
                c.json(
                    &format!("managed-policy-{n}-version.json"),
                    GetPolicyVersion {
                        arn: arn.clone(),
                        version: version.to_owned(),
                    },
                )
                .await?;
            }
        }
    }
    if let Some(inline) = c
        .json(
            "role-inline-policies.json",
            ListRolePolicies {
                role: role.to_owned(),
            },
        )
        .await?
    {
        let names: Vec<String> = list(
            &inline,
            &[
                "ListRolePoliciesResponse",
                "ListRolePoliciesResult",
                "PolicyNames",
            ],
        )
        .iter()
        .filter_map(|p| p.as_str().map(str::to_owned))
        .collect();
        for (i, policy) in names.into_iter().enumerate() {
            c.json(
                &format!("inline-policy-{}.json", i + 1),
                GetRolePolicy {
                    role: role.to_owned(),
                    policy,
                },
            )
            .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
