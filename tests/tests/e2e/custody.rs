//! Custody after verification, through the real workflow against moto: verify countersigns
//! each manifest with template 3's KMS key (made in moto from the template's definition) and
//! appends the case's custody log. The test checks each signature with the key's public half
//! from kms:GetPublicKey (openssl, outside airf's code), that the statements name the stored
//! manifests and the execution, that the log chains, and that the deployed policies allow
//! every call the controller made for it (tests/iam).
//!
//! The instance's side is the real agent, run on this host with the acquisition role's
//! session as instance `id` holds it and the instance id as hostname (a UTS namespace), so the
//! evidence lands where the documents would put it. This host gives no memory to acquire: the
//! memory result is the agent's over a file, its manifest then relabelled `memory` (verify
//! checks kind, case, hashes and sizes; all but the kind stay the agent's).
#![expect(
    clippy::indexing_slicing,
    reason = "serde_json::Value indexing yields Null, it never panics"
)]

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

use airf_e2e::agent_bin;
use airf_e2e::emulator::{ACCOUNT, Emulator, REGION, sdk};
use airf_e2e::workflow_runner::World;
use anyhow::{Context, Result, bail, ensure};
use base64::Engine as _;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const CASE: &str = "IR-CUSTODY-1";

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The agent's `disk` run over `file` as instance `id`: its JSON result.
fn acquire_as(emu: &Emulator, id: &str, file: &Path) -> Result<Value> {
    let creds = emu.acquisition_credentials(id)?;
    let kms = emu.config.kms_key_id.clone();
    let mut cmd = Command::new("unshare");
    // The agent names the evidence folder after the host: off EC2, its hostname.
    cmd.args([
        "--uts",
        "sh",
        "-c",
        r#"hostname "$1" && shift && exec "$@""#,
        "sh",
        id,
    ])
    .arg(agent_bin()?)
    .arg("disk")
    .arg(file)
    .arg(format!(
        "--to=s3://{}/{}/",
        emu.config.evidence_bucket, emu.config.evidence_prefix
    ))
    .arg(format!("--case={CASE}"))
    .arg(format!("--region={REGION}"))
    .arg(format!("--endpoint-url={}", emu.server.endpoint()?))
    .args(["--no-progress", "--json"]);
    if !kms.is_empty() {
        cmd.arg(format!("--sse-kms-key-id={kms}"));
    }
    cmd.envs(emu.server.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("AWS_ACCESS_KEY_ID", creds.access_key_id())
        .env("AWS_SECRET_ACCESS_KEY", creds.secret_access_key())
        .env(
            "AWS_SESSION_TOKEN",
            creds.session_token().unwrap_or_default(),
        );
    let out = cmd.output()?;
    ensure!(
        out.status.success(),
        "the agent failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).context("the agent printed no JSON result")
}

/// The key of the manifest a result names.
fn manifest_key(result: &Value) -> Result<String> {
    result["sources"][0]["manifest"]["key"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no manifest key in {result}"))
}

/// The instance: answers each command with its prepared result; records verify's payload.
struct Instance<'a> {
    emu: &'a Emulator,
    memory: Value,
    disk: Value,
    verify: Mutex<Option<Value>>,
}

impl World for Instance<'_> {
    fn before_task(&self, action: &str, payload: &Value, _: u64) -> Result<()> {
        if action == "verify" {
            *self
                .verify
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))? = Some(payload.clone());
        }
        Ok(())
    }

    fn instance_side(&self, kind: &str, command_id: &str) -> Result<()> {
        let result = match kind {
            "memory" => &self.memory,
            "disk" => &self.disk,
            other => bail!("unknown acquisition {other}"),
        };
        self.emu
            .answer_command(command_id, "Success", &result.to_string(), "")
    }
}

/// Whether openssl accepts `signature` (DER) over `message` with the DER public key `spki`.
fn openssl_verifies(spki: &[u8], message: &[u8], signature: &[u8]) -> Result<bool> {
    let dir = tempfile::tempdir()?;
    let (der, pem) = (dir.path().join("pub.der"), dir.path().join("pub.pem"));
    let (msg, sig) = (dir.path().join("msg"), dir.path().join("sig"));
    std::fs::write(&der, spki)?;
    std::fs::write(&msg, message)?;
    std::fs::write(&sig, signature)?;
    airf_e2e::run_ok(
        Command::new("openssl")
            .args(["pkey", "-pubin", "-inform", "DER", "-in"])
            .arg(&der)
            .arg("-out")
            .arg(&pem),
    )?;
    let out = Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(&pem)
        .arg("-signature")
        .arg(&sig)
        .arg(&msg)
        .output()?;
    Ok(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Verified OK"))
}

#[test]
fn verified_manifests_are_countersigned_and_the_custody_log_chains() -> Result<()> {
    let emu = Emulator::start("")?;
    let id = emu.instance(&[("Name", "web-1")])?;
    let work = tempfile::tempdir()?;
    let (mem, disk) = (work.path().join("mem.img"), work.path().join("disk.img"));
    std::fs::write(
        &mem,
        (0..1u32 << 20).map(|i| (i % 251) as u8).collect::<Vec<_>>(),
    )?;
    std::fs::write(
        &disk,
        (0..2u32 << 20)
            .map(|i| (i / 512 % 241) as u8)
            .collect::<Vec<_>>(),
    )?;
    let memory = acquire_as(&emu, &id, &mem)?;
    let disk = acquire_as(&emu, &id, &disk)?;
    // Relabel the memory manifest (see the module comment).
    let mem_key = manifest_key(&memory)?;
    let mut manifest: Value = serde_json::from_slice(&emu.server.get(&mem_key)?)?;
    manifest["kind"] = json!("memory");
    let relabelled = work.path().join("mem.manifest.json");
    std::fs::write(&relabelled, serde_json::to_vec_pretty(&manifest)?)?;
    emu.server.put(&mem_key, &relabelled)?;

    let instance = Instance {
        emu: &emu,
        memory,
        disk,
        verify: Mutex::new(None),
    };
    let input = json!({"case_id": CASE, "intent": "investigate", "trigger": "console",
        "retain_artefacts": true,
        "instances": [{"instance_id": id, "account": ACCOUNT, "region": REGION, "claim": 1}]});
    let run = emu.run_workflow_in(&input, &instance)?;
    run.ensure_succeeded()?;
    let verify = instance
        .verify
        .into_inner()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .context("verify never ran")?;
    let execution = verify["execution_arn"]
        .as_str()
        .context("verify was given no execution ARN")?
        .to_owned();
    ensure!(
        execution.starts_with(&format!("arn:aws:states:{REGION}:{ACCOUNT}:execution:")),
        "{execution}"
    );

    // The summary names the log and what was added to it.
    let entry = &run.outcome["output"]["instances"][0];
    let log = format!("{}/{CASE}/custody/", emu.config.evidence_prefix);
    ensure!(
        entry["custody"]
            == json!({"log": format!("s3://{}/{log}", emu.config.evidence_bucket),
                      "signatures": 2, "entries": 8}),
        "{entry}"
    );

    // Each manifest's countersignature verifies with the key's public half, over a statement
    // naming the stored manifest's bytes, its image and this execution.
    let public = sdk(emu.rt.block_on(
        emu.kms
            .get_public_key()
            .key_id(&emu.config.signing_key_arn)
            .send(),
    ))?;
    let spki = public
        .public_key()
        .context("no public key")?
        .as_ref()
        .to_vec();
    for result in [&instance.memory, &instance.disk] {
        let key = manifest_key(result)?;
        let sig_key = key.replace(".manifest.json", ".manifest.sig.json");
        let stored: Value = serde_json::from_slice(&emu.server.get(&sig_key)?)?;
        let text = stored["statement"].as_str().context("no statement")?;
        let der = base64::engine::general_purpose::STANDARD
            .decode(stored["signature"].as_str().context("no signature")?)?;
        ensure!(
            openssl_verifies(&spki, text.as_bytes(), &der)?,
            "the countersignature of {key} does not verify with the signing key's public key"
        );
        let mut tampered = text.as_bytes().to_vec();
        if let Some(b) = tampered.iter_mut().find(|b| b.is_ascii_digit()) {
            *b = if *b == b'0' { b'1' } else { b'0' };
        }
        ensure!(
            !openssl_verifies(&spki, &tampered, &der)?,
            "a changed statement still verifies: the check proves nothing"
        );
        let statement: Value = serde_json::from_str(text)?;
        let manifest_bytes = emu.server.get(&key)?;
        ensure!(
            statement["manifest"]["sha256"] == json!(sha256(&manifest_bytes))
                && statement["manifest"]["key"] == json!(key)
                && statement["case"] == json!(CASE)
                && statement["host"] == json!(id)
                && statement["execution_arn"] == json!(execution)
                && statement["key_id"] == json!(emu.config.signing_key_arn)
                && statement["image"]["sha256"] == result["sources"][0]["compressed_sha256"]
                && statement["raw_sha256"] == result["sources"][0]["raw_sha256"],
            "{statement}"
        );
    }

    // The log: entries 1..=8, each chained to the previous one's stored bytes, acquired, read,
    // verified and signed per manifest, all naming the execution.
    let keys = emu.server.keys(&log)?;
    ensure!(keys.len() == 8, "{keys:?}");
    let mut previous: Option<Vec<u8>> = None;
    let mut actions = Vec::new();
    for (n, key) in keys.iter().enumerate() {
        ensure!(key.ends_with(&format!("{:010}.json", n + 1)), "{keys:?}");
        let bytes = emu.server.get(key)?;
        let e: Value = serde_json::from_slice(&bytes)?;
        let expected = previous.as_deref().map(sha256).unwrap_or_default();
        ensure!(
            e["seq"] == json!(n + 1) && e["prev_sha256"] == json!(expected),
            "entry {key} does not chain: {e}"
        );
        ensure!(
            e["execution_arn"] == json!(execution) && e["case"] == json!(CASE),
            "{e}"
        );
        actions.push(e["action"].as_str().unwrap_or_default().to_owned());
        previous = Some(bytes);
    }
    ensure!(
        actions == ["acquired", "read", "verified", "signed"].repeat(2),
        "{actions:?}"
    );

    // Every call the controller and the agent made is allowed by the deployed policies.
    let report = emu.check_iam()?;
    ensure!(report.contains("0 denied"), "{report}");
    let calls = emu.calls.records()?;
    for op in ["Sign", "PutObject", "ListObjectsV2", "GetCallerIdentity"] {
        ensure!(
            calls.iter().any(|c| c["operation"] == json!(op)
                && c["principal"]["role_arn"]
                    .as_str()
                    .is_some_and(|r| r.ends_with(&format!("/{}", emu.deployment.controller_role)))),
            "the controller made no {op} call that was evaluated"
        );
    }
    Ok(())
}
