//! `acquire` and `acquire_status`: run the SSM documents (memory, then disks) and read the
//! agent's JSON result from the command output.

use crate::cloud::{Cloud, Invocation};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::model::{AcquisitionResult, SentCommand, Subject};
use airf_evidence::EvidenceKind;
use airf_evidence::report::{RunReport, Status};
use std::collections::BTreeMap;

/// A kind of evidence the workflow asked for that no document acquires (a newer workflow's).
fn unknown_kind(kind: &str) -> Error {
    Error::bad_input(format!(
        "no acquisition document for evidence kind {kind:?}: the controller acquires memory or disk"
    ))
}

/// Seconds SSM lets the step run (the documents' own defaults).
fn timeout(kind: &EvidenceKind) -> Result<i32> {
    match kind {
        EvidenceKind::Memory => Ok(3600),
        EvidenceKind::Disk => Ok(21600),
        EvidenceKind::Unknown(k) => Err(unknown_kind(k)),
    }
}

/// An SSM command's parameters: name to values.
pub type Parameters = BTreeMap<String, Vec<String>>;

/// Document, shell step and parameters for one acquisition.
pub fn command(
    config: &Config,
    case_id: &str,
    kind: &EvidenceKind,
) -> Result<(String, &'static str, Parameters)> {
    let (document, plugin) = match kind {
        EvidenceKind::Memory => (config.memory_document.clone(), "AcquireMemory"),
        EvidenceKind::Disk => (config.disk_document.clone(), "AcquireDisks"),
        EvidenceKind::Unknown(k) => return Err(unknown_kind(k)),
    };
    let mut p = BTreeMap::new();
    let mut set = |k: &str, v: &str| {
        p.insert(k.to_owned(), vec![v.to_owned()]);
    };
    set("EvidenceBucket", &config.evidence_bucket);
    set("EvidencePrefix", &config.evidence_prefix);
    set("CaseId", case_id);
    set("Region", &config.evidence_region);
    set("ArtifactBucket", &config.artifact_bucket);
    set("AgentVersion", &config.agent_version);
    set("AgentSha256", &config.agent_sha256);
    set("ExecutionTimeout", &timeout(kind)?.to_string());
    if !config.kms_key_id.is_empty() {
        set("KmsKeyId", &config.kms_key_id);
    }
    if !config.agent_endpoint_url.is_empty() {
        set("EndpointUrl", &config.agent_endpoint_url);
    }
    if *kind == EvidenceKind::Disk {
        set("Devices", "all");
    }
    Ok((document, plugin, p))
}

/// Sends the document for `kind`.
pub async fn acquire<C: Cloud>(
    cloud: &C,
    config: &Config,
    case_id: &str,
    subject: &Subject,
    kind: EvidenceKind,
) -> Result<SentCommand> {
    let (document, plugin, parameters) = command(config, case_id, &kind)?;
    let comment = format!("airf {case_id}");
    let command_id = cloud
        .send_command(
            &subject.target,
            &document,
            &parameters,
            timeout(&kind)? + 600,
            &comment,
        )
        .await?;
    Ok(SentCommand {
        command_id,
        document,
        plugin: plugin.to_owned(),
        kind,
    })
}

/// What the command's state means for the workflow.
pub fn interpret(sent: &SentCommand, invocation: &Invocation) -> Result<AcquisitionResult> {
    let what = sent.kind.as_str();
    if matches!(
        invocation.status.as_str(),
        "Pending" | "InProgress" | "Delayed" | "Cancelling"
    ) {
        return Err(Error::Pending(format!(
            "{what} acquisition {} is {}",
            sent.command_id, invocation.status
        )));
    }
    // The documents print exactly one line of stdout: the agent's JSON result.
    let line = invocation
        .stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'));
    let report = line.and_then(|l| serde_json::from_str::<RunReport>(l.trim()).ok());
    let Some(report) = report else {
        let stderr: String = invocation
            .stderr
            .chars()
            .rev()
            .take(400)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return Err(Error::failed(format!(
            "{what} acquisition {} ended {} without an agent result on stdout (truncated output, or the agent \
             never ran); stderr: {}",
            sent.command_id,
            invocation.status,
            if stderr.trim().is_empty() {
                "(empty)"
            } else {
                stderr.trim()
            }
        )));
    };
    match report.status {
        Status::Complete | Status::CompletedWithReadErrors => Ok(AcquisitionResult {
            kind: sent.kind.clone(),
            command_id: sent.command_id.clone(),
            ssm_status: invocation.status.clone(),
            report,
        }),
        Status::Hollow | Status::Failed | Status::Interrupted | Status::Unknown => {
            Err(Error::failed(format!(
                "{what} acquisition {} {}: {}",
                sent.command_id,
                match report.status {
                    Status::Hollow => "stored a hollow image (memory missing from it)",
                    Status::Failed => "failed",
                    // A newer agent's status: not known to be evidence, so not taken for it.
                    Status::Unknown => "ended with a status this controller does not know",
                    _ => "was interrupted",
                },
                report_errors(&report)
            )))
        }
    }
}

/// The run's errors, or its sources' (a hollow image names its cause on the source).
fn report_errors(report: &RunReport) -> String {
    let errors: Vec<&str> = report
        .errors
        .iter()
        .map(String::as_str)
        .chain(report.sources.iter().filter_map(|s| s.error.as_deref()))
        .collect();
    if errors.is_empty() {
        "(no error text)".to_owned()
    } else {
        errors.join("; ")
    }
}

/// Reads the command's state: the result when done, `Airf.Pending` while it runs.
pub async fn status<C: Cloud>(
    cloud: &C,
    subject: &Subject,
    sent: &SentCommand,
) -> Result<AcquisitionResult> {
    let invocation = cloud
        .command_invocation(&subject.target, &sent.command_id, &sent.plugin)
        .await?;
    interpret(sent, &invocation)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_config;

    fn sent(kind: EvidenceKind) -> SentCommand {
        SentCommand {
            command_id: "c-1".into(),
            document: "d".into(),
            plugin: "AcquireMemory".into(),
            kind,
        }
    }

    fn inv(status: &str, stdout: &str) -> Invocation {
        Invocation {
            status: status.into(),
            stdout: stdout.into(),
            stderr: "agent: sha256 mismatch".into(),
        }
    }

    const OK: &str = r#"{"command":"memory","status":"complete","exit_code":0,"case":"IR-1","evidence_folder":"s3://b/e/IR-1/i-1/t/","sources":[],"errors":[],"duration_seconds":1.0}"#;

    #[test]
    fn parameters_follow_the_documents() {
        let (doc, plugin, p) = command(&test_config(), "IR-1", &EvidenceKind::Disk).unwrap();
        assert_eq!(
            (doc.as_str(), plugin),
            ("airf-acquire-disk", "AcquireDisks")
        );
        assert_eq!(p.get("Devices"), Some(&vec!["all".to_owned()]));
        assert_eq!(p.get("CaseId"), Some(&vec!["IR-1".to_owned()]));
        assert!(
            !p.contains_key("KmsKeyId"),
            "empty optional parameters are left to the document's default"
        );
        let (_, plugin, p) = command(&test_config(), "IR-1", &EvidenceKind::Memory).unwrap();
        assert_eq!(plugin, "AcquireMemory");
        assert!(!p.contains_key("Devices"));
    }

    /// A kind a newer workflow may name reads as Unknown; no document acquires it.
    #[test]
    fn an_unknown_kind_is_bad_input() {
        let kind: EvidenceKind = serde_json::from_str("\"network_capture\"").unwrap();
        let e = command(&test_config(), "IR-1", &kind).unwrap_err();
        assert!(
            matches!(&e, Error::BadInput(m) if m.contains("network_capture")),
            "{e:?}"
        );
    }

    #[test]
    fn running_commands_are_pending_and_results_are_parsed() {
        assert!(matches!(
            interpret(&sent(EvidenceKind::Memory), &inv("InProgress", "")),
            Err(Error::Pending(_))
        ));
        let done = interpret(
            &sent(EvidenceKind::Memory),
            &inv("Success", &format!("noise\n{OK}\n")),
        );
        assert!(matches!(done, Ok(r) if r.report.case == "IR-1"));
    }

    #[test]
    fn failures_say_why() {
        let e = interpret(&sent(EvidenceKind::Memory), &inv("Success", ""))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("without an agent result") && e.contains("sha256 mismatch"),
            "{e}"
        );
        let failed = OK
            .replace(r#""status":"complete""#, r#""status":"failed""#)
            .replace(r#""errors":[]"#, r#""errors":["no /proc/kcore"]"#);
        let e = interpret(&sent(EvidenceKind::Memory), &inv("Failed", &failed))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("failed: no /proc/kcore"), "{e}");
    }

    /// A newer agent's result: its unknown fields do not stop the controller, but a status it
    /// does not know is not taken for success.
    #[test]
    fn a_newer_agents_result_is_read_and_an_unknown_status_fails_the_step() {
        let newer = OK.replace(r#""errors":[]"#, r#""errors":[],"host_load":{"cpu":0.5}"#);
        let done = interpret(&sent(EvidenceKind::Memory), &inv("Success", &newer)).unwrap();
        assert!(done.report.extra.contains_key("host_load"));
        let unknown = newer.replace(r#""status":"complete""#, r#""status":"complete_but_later""#);
        let e = interpret(&sent(EvidenceKind::Memory), &inv("Success", &unknown));
        assert!(
            matches!(&e, Err(Error::Failed(m)) if m.contains("status this controller does not know")),
            "{e:?}"
        );
    }

    /// A hollow memory image (exit 5) is stored but is not evidence: the step fails, naming why.
    #[test]
    fn a_hollow_memory_image_fails_the_step() {
        let hollow = OK
            .replace(r#""status":"complete","exit_code":0"#, r#""status":"hollow","exit_code":5"#)
            .replace(
                r#""sources":[]"#,
                r#""sources":[{"source":"memory (lime)","status":"hollow","raw_size":1,"compressed_size":1,"unreadable_bytes":0,"unreadable_ranges":0,"duration_seconds":1.0,"throughput_mb_s":1.0,"error":"the kernel's own banner is not in the image"}]"#,
            );
        let e = interpret(&sent(EvidenceKind::Memory), &inv("Failed", &hollow));
        assert!(
            matches!(&e, Err(Error::Failed(m)) if m.contains("hollow image") && m.contains("banner is not in the image")),
            "{e:?}"
        );
    }
}
