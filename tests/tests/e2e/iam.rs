//! IAM evaluated on every AWS call: the workflow runs against moto, which records each call
//! with the role that made it (tests/iam/record.py), and every call is evaluated against the
//! policies templates 1, 3 and 4 deploy (tests/iam/evaluate.py, @cloud-copilot/iam-simulate).
//! moto evaluates no IAM, so without this a call the deployed policies deny passes every test
//! and fails on the first real run.
#![expect(
    clippy::indexing_slicing,
    reason = "serde_json::Value indexing yields Null, it never panics"
)]

use airf_e2e::agent_bin;
use airf_e2e::emulator::{ACCOUNT, Emulator, REGION};
use airf_e2e::workflow_runner::legacy_input;
use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

/// Runs the contain-only workflow on one instance to its end.
fn contain(emu: &Emulator, case: &str) -> Result<String> {
    let id = emu.instance(&[("Name", "web-1")])?;
    let run = emu.run_containment(case, &[&id])?;
    run.ensure_succeeded()?;
    Ok(id)
}

/// The roles that made the recorded calls, by name.
fn callers(emu: &Emulator) -> Result<Vec<String>> {
    let mut roles: Vec<String> = emu
        .calls
        .records()?
        .iter()
        .filter_map(|r| r["principal"]["role_arn"].as_str())
        .filter_map(|arn| arn.rsplit('/').next())
        .map(str::to_owned)
        .collect();
    roles.sort();
    roles.dedup();
    Ok(roles)
}

#[test]
fn every_call_of_a_containment_is_allowed_by_the_deployed_policies() -> Result<()> {
    let emu = Emulator::start("")?;
    contain(&emu, "IR-IAM-CONTAIN")?;
    let report = emu.check_iam()?;
    // The controller's own role (StartExecution, Publish, AssumeRole) and the member role it
    // assumes (EC2, IAM, ...) both made calls, and each was evaluated.
    let roles = callers(&emu)?;
    ensure!(
        roles.contains(&emu.deployment.controller_role)
            && roles.contains(&emu.config.member_role_name),
        "{roles:?}"
    );
    ensure!(report.contains("0 denied"), "{report}");
    Ok(())
}

/// The SendCommand parameters the controller gave the document, from the call log.
fn command_parameters(emu: &Emulator) -> Result<Value> {
    emu.calls
        .records()?
        .into_iter()
        .rev()
        .find(|r| r["operation"] == "SendCommand")
        .map(|r| r["params"]["Parameters"].clone())
        .context("the controller sent no command")
}

fn first(params: &Value, name: &str) -> String {
    params[name][0].as_str().unwrap_or_default().to_owned()
}

/// The instance's side of the memory command: the agent, with the acquisition role's session
/// as the instance holds it, uploads to where the document would send it (the command's own
/// parameters, as airf-run.sh builds the destination). A file stands for the memory, which
/// this host does not expose; the command is then answered Failed, ending the workflow.
fn agent_upload(emu: &Emulator, instance: &str, command_id: &str) -> Result<()> {
    let p = command_parameters(emu)?;
    let creds = emu.acquisition_credentials(instance)?;
    let work = tempfile::tempdir()?;
    let image = work.path().join("memory.img");
    // Over one 5 MiB part: the multipart calls are made, not only PutObject.
    std::fs::write(&image, vec![0x5au8; 6 << 20])?;
    let mut cmd = std::process::Command::new(agent_bin()?);
    cmd.arg("disk")
        .arg(&image)
        .arg("--to")
        .arg(format!(
            "s3://{}/{}/",
            first(&p, "EvidenceBucket"),
            first(&p, "EvidencePrefix")
        ))
        .arg(format!("--case={}", first(&p, "CaseId")))
        .arg(format!("--region={}", first(&p, "Region")))
        .args(["--no-progress", "--json", "--part-size", "5MiB"])
        .arg(format!("--endpoint-url={}", emu.server.endpoint()?));
    let kms = first(&p, "KmsKeyId");
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
    let failed = json!({"command": "memory", "status": "failed", "exit_code": 1,
        "error": "memory stands in here: the upload above was a file"});
    emu.answer_command(command_id, "Failed", &failed.to_string(), "")
}

#[test]
fn every_call_of_an_investigation_and_of_its_agent_is_allowed_by_the_deployed_policies()
-> Result<()> {
    let emu = Emulator::start("")?;
    let id = emu.instance(&[("Name", "web-1")])?;
    let input = legacy_input("IR-IAM-INVESTIGATE", &id);
    let run = emu.run_workflow(&input, |kind, command_id| {
        ensure!(kind == "memory", "{kind} acquisition after memory failed");
        agent_upload(&emu, &id, command_id)
    })?;
    ensure!(
        run.outcome["status"] == json!("FAILED"),
        "the stand-in memory run fails the workflow: {}",
        run.outcome
    );
    ensure!(
        run.actions.iter().any(|a| a == "prepare") && run.actions.iter().any(|a| a == "acquire"),
        "{:?}",
        run.actions
    );
    let roles = callers(&emu)?;
    ensure!(
        roles.contains(&emu.deployment.acquisition_role),
        "the agent's uploads were not recorded with the acquisition role: {roles:?}"
    );
    let uploads: Vec<String> = emu
        .calls
        .records()?
        .iter()
        .filter(|r| r["service"] == "s3")
        .filter_map(|r| r["operation"].as_str().map(str::to_owned))
        .collect();
    for op in [
        "CreateMultipartUpload",
        "UploadPart",
        "CompleteMultipartUpload",
    ] {
        ensure!(uploads.iter().any(|u| u == op), "no {op} in {uploads:?}");
    }
    emu.check_iam()?;
    Ok(())
}

/// The evaluation is not vacuous: a call the policies deny (the member role changing airf's own
/// acquisition role, which `NeverChangeAirfRoles` forbids) fails it, naming that statement.
#[test]
fn a_call_the_deployed_policies_deny_fails_with_the_statement_that_denies_it() -> Result<()> {
    let emu = Emulator::start("")?;
    let member = format!(
        "arn:aws:iam::{ACCOUNT}:role/{}",
        emu.config.member_role_name
    );
    let sdk = emu.rt.block_on(
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(emu.server.endpoint()?)
            .region(aws_config::Region::new(REGION))
            .credentials_provider(aws_credential_types::Credentials::new(
                "testing", "testing", None, None, "test",
            ))
            .load(),
    );
    let session = emu.rt.block_on(airf_e2e::iam_calls::assume_role(
        &sdk,
        &member,
        "airf-controller",
    ))?;
    let as_member = aws_sdk_iam::Client::from_conf(
        aws_sdk_iam::config::Builder::from(&sdk)
            .credentials_provider(session)
            .build(),
    );
    let doc = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Deny",
        "Action": "*", "Resource": "*"}]});
    emu.rt.block_on(
        as_member
            .put_role_policy()
            .role_name(&emu.deployment.acquisition_role)
            .policy_name("x")
            .policy_document(doc.to_string())
            .send(),
    )?;
    let Err(e) = emu.check_iam() else {
        bail!(
            "PutRolePolicy on {} passed",
            emu.deployment.acquisition_role
        );
    };
    let message = format!("{e:#}");
    ensure!(
        message.contains("iam:PutRolePolicy")
            && message.contains("explicitly denied")
            && message.contains("NeverChangeAirfRoles"),
        "{message}"
    );
    // The denial was this test's own doing: its log must not fail tests/run.sh's evaluation of
    // every test's calls.
    std::fs::write(&emu.calls.path, "")?;
    Ok(())
}
