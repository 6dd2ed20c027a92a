//! IAM evaluated on the AWS calls the tests make through moto (which evaluates none).
//!
//! - [`Deployment`]: the names the CloudFormation templates deploy (roles, instance profiles,
//!   buckets, the controller's Lambda environment), rendered by `tests/iam/deployment.py`, so
//!   the emulator creates exactly those and no name is typed in a test.
//! - [`CallLog`]: the calls moto served to assumed roles (`tests/iam/record.py`, enabled by
//!   `tests/scripts/moto.sh`), evaluated by `tests/iam/evaluate.py` against the templates'
//!   policies with @cloud-copilot/iam-simulate. A call the deployed policies would deny is an
//!   error naming the statement that denies it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use aws_credential_types::Credentials;
use aws_credential_types::provider::ProvideCredentials;
use serde_json::Value;

use crate::repo_root;

/// A role the templates create, with its trust policy and permissions boundary.
#[derive(Debug, Clone)]
pub struct DeployedRole {
    pub name: String,
    pub trust: String,
    /// The ARN of its permissions boundary, if the template sets one.
    pub boundary: Option<String>,
}

/// A customer managed policy the templates create.
#[derive(Debug, Clone)]
pub struct DeployedPolicy {
    pub name: String,
    pub document: String,
}

/// An instance profile the templates create and the roles in it.
#[derive(Debug, Clone)]
pub struct DeployedProfile {
    pub name: String,
    pub roles: Vec<String>,
}

/// A KMS key the templates create, as the emulator creates it in moto.
#[derive(Debug, Clone)]
pub struct DeployedKey {
    /// The key id CloudFormation rendering gives it (moto_aws.py creates the key with it).
    pub id: String,
    pub arn: String,
    pub key_spec: String,
    pub key_usage: String,
    pub description: String,
    /// The key policy, JSON.
    pub policy: String,
}

/// What templates 1, 3 and 4 deploy, as far as the emulator needs it.
#[derive(Debug, Clone)]
pub struct Deployment {
    /// Every role of templates 3 and 4, by the name CloudFormation gives it.
    pub roles: Vec<DeployedRole>,
    pub profiles: Vec<DeployedProfile>,
    /// Created before the roles: a role's boundary must exist.
    pub managed_policies: Vec<DeployedPolicy>,
    /// The controller Lambda's role (template 3, ControllerRole).
    pub controller_role: String,
    /// The acquisition instance role (template 4, AcquisitionInstanceRole).
    pub acquisition_role: String,
    /// Template 3's role of the snapshot task (Fargate), and template 4's snapshot reader.
    pub snapshot_task_role: String,
    pub snapshot_reader_role: String,
    /// The controller Lambda's environment (template 3, ControllerFunction).
    pub controller_env: BTreeMap<String, String>,
    pub evidence_bucket: String,
    pub artifact_bucket: String,
    /// Template 3's countersignature key (SigningKey).
    pub signing_key: DeployedKey,
}

fn string(v: &Value, key: &str) -> Result<String> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .with_context(|| format!("tests/iam/deployment.py: no string {key} in {v}"))
}

impl Deployment {
    /// Renders the templates (`python3 tests/iam/deployment.py emulator`).
    pub fn load() -> Result<Self> {
        let script = repo_root().join("tests/iam/deployment.py");
        let out = crate::run_ok(Command::new("python3").arg(&script).arg("emulator"))?;
        let v: Value = serde_json::from_slice(&out.stdout)
            .with_context(|| format!("{} printed no JSON", script.display()))?;
        let list = |key: &str| -> Result<Vec<Value>> {
            v.get(key)
                .and_then(Value::as_array)
                .cloned()
                .with_context(|| format!("tests/iam/deployment.py: no list {key}"))
        };
        let roles = list("roles")?
            .iter()
            .map(|r| {
                Ok(DeployedRole {
                    name: string(r, "name")?,
                    trust: r
                        .get("trust")
                        .context("a role without trust policy")?
                        .to_string(),
                    boundary: r.get("boundary").and_then(Value::as_str).map(str::to_owned),
                })
            })
            .collect::<Result<_>>()?;
        let profiles = list("profiles")?
            .iter()
            .map(|p| {
                let roles = p
                    .get("roles")
                    .and_then(Value::as_array)
                    .context("a profile without roles")?
                    .iter()
                    .filter_map(|r| r.as_str().map(str::to_owned))
                    .collect();
                Ok(DeployedProfile {
                    name: string(p, "name")?,
                    roles,
                })
            })
            .collect::<Result<_>>()?;
        let managed_policies = list("managed_policies")?
            .iter()
            .map(|p| {
                Ok(DeployedPolicy {
                    name: string(p, "name")?,
                    document: p
                        .get("document")
                        .context("a policy without document")?
                        .to_string(),
                })
            })
            .collect::<Result<_>>()?;
        let controller_env = v
            .get("controller_env")
            .and_then(Value::as_object)
            .context("no controller_env")?
            .iter()
            .map(|(k, val)| {
                Ok((
                    k.clone(),
                    val.as_str().context("a non-string env var")?.to_owned(),
                ))
            })
            .collect::<Result<_>>()?;
        let key = v.get("signing_key").context("no signing_key")?;
        let signing_key = DeployedKey {
            id: string(key, "id")?,
            arn: string(key, "arn")?,
            key_spec: string(key, "key_spec")?,
            key_usage: string(key, "key_usage")?,
            description: string(key, "description")?,
            policy: key
                .get("policy")
                .context("a key without policy")?
                .to_string(),
        };
        Ok(Deployment {
            signing_key,
            roles,
            profiles,
            managed_policies,
            controller_role: string(&v, "controller_role")?,
            acquisition_role: string(&v, "acquisition_role")?,
            snapshot_task_role: string(&v, "snapshot_task_role")?,
            snapshot_reader_role: string(&v, "snapshot_reader_role")?,
            controller_env,
            evidence_bucket: string(&v, "evidence_bucket")?,
            artifact_bucket: string(&v, "artifact_bucket")?,
        })
    }
}

/// Credentials of a session of `role_arn`, as STS (moto's) issues them: what a Lambda function
/// or an instance profile gives the code that runs with that role.
pub async fn assume_role(
    sdk: &aws_config::SdkConfig,
    role_arn: &str,
    session: &str,
) -> Result<Credentials> {
    let provider = aws_config::sts::AssumeRoleProvider::builder(role_arn)
        .session_name(session)
        .configure(sdk)
        .build()
        .await;
    provider
        .provide_credentials()
        .await
        .with_context(|| format!("assuming {role_arn} in moto"))
}

/// The calls moto recorded for one emulator.
#[derive(Debug, Clone)]
pub struct CallLog {
    pub path: PathBuf,
}

/// Where each test's call log is kept after its emulator stops, for the table of every
/// recorded call (`tests/run.sh`): `$CARGO_TARGET_DIR/iam-calls` (or `target/iam-calls`).
pub fn kept_logs_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
        .join("iam-calls")
}

impl CallLog {
    /// Evaluates every recorded call; an error lists each call the deployed policies deny.
    pub fn check(&self) -> Result<String> {
        if !self.path.exists() {
            bail!(
                "no call was recorded in {} (is tests/scripts/moto.sh recording?)",
                self.path.display()
            );
        }
        let out = Command::new("python3")
            .arg(repo_root().join("tests/iam/evaluate.py"))
            .arg(&self.path)
            .output()
            .context("running tests/iam/evaluate.py")?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!(
                "IAM: the deployed policies deny calls made in this test:\n{}{stdout}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(stdout)
    }

    /// Every recorded call, parsed.
    pub fn records(&self) -> Result<Vec<Value>> {
        let text = std::fs::read_to_string(&self.path)
            .with_context(|| format!("reading {}", self.path.display()))?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).context("a call log line that is not JSON"))
            .collect()
    }

    /// Copies the log to `dir/<name>.jsonl` (the test's name, `::` made `.`).
    pub fn keep(&self, dir: &Path, name: &str) -> Result<()> {
        if !self.path.exists() {
            return Ok(());
        }
        std::fs::create_dir_all(dir)?;
        let file = format!("{}.jsonl", name.replace("::", "."));
        std::fs::copy(&self.path, dir.join(file))?;
        Ok(())
    }
}
