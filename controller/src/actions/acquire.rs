//! `acquire` and `acquire_status`: run the SSM documents (triage, then memory, then disks) and
//! read the agent's JSON result from the command output. A finished triage is notified at once
//! with its headline facts ([`triage_summary`]).
//!
//! SSM keeps only the first 24,000 characters of a step's stdout (GetCommandInvocation's
//! `StandardOutputContent`; the SSM Agent cuts it and appends `--output truncated--`). A result
//! that long is read whole from the copy the agent stored in its evidence folder
//! (`<evidence_folder>/result.json`, [`RESULT_OBJECT`]), with the controller's own read access to
//! the evidence bucket: no new permission for anyone. The folder is read from the start of the
//! truncated line (the agent prints it fifth), and only a folder of this case under the evidence
//! prefix is read.
//!
//! When the shell step failed, the document's download step is asked why: an `aws:downloadContent`
//! that the artifact bucket refused (the SSM Agent reports `http request failed. status:403
//! Forbidden`, after its signed GetObject was denied and its unsigned retry too) names the role
//! and the object to fix, where the shell step alone only says the agent is missing.

use crate::cloud::{Cloud, Invocation};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::model::{AcquisitionResult, SentCommand, Subject};
use crate::notify::notify;
use airf_evidence::EvidenceKind;
use airf_evidence::report::{RESULT_OBJECT, RunReport, Status};
use airf_evidence::triage::Headline;
use std::collections::BTreeMap;

/// A kind of evidence the workflow asked for that no document acquires (a newer workflow's).
fn unknown_kind(kind: &str) -> Error {
    Error::bad_input(format!(
        "no acquisition document for evidence kind {kind:?}: the controller acquires triage, memory or disk"
    ))
}

/// Seconds SSM lets the step run (the documents' own defaults).
fn timeout(kind: &EvidenceKind) -> Result<i32> {
    match kind {
        EvidenceKind::Memory => Ok(3600),
        EvidenceKind::Disk => Ok(21600),
        // The agent's own time budget is 60 s; the document kills it 300 s before this.
        EvidenceKind::Triage => Ok(600),
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
        EvidenceKind::Triage => (config.triage_document.clone(), "CollectTriage"),
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

/// The suffix the SSM Agent puts where it cut a step's stdout (amazon-ssm-agent
/// `runpluginutil.go`: `StringPrefix(stdout, 24000, "--output truncated--")`).
pub const SSM_TRUNCATED: &str = "--output truncated--";
/// The most stdout GetCommandInvocation returns.
pub const SSM_MAX_STDOUT: usize = 24_000;
/// The document step that downloads the agent (ssm-documents/src/documents.yaml, `downloads`).
pub const DOWNLOAD_STEP: &str = "DownloadAgent";

/// What the command's stdout holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// The agent's result, whole.
    Report(Box<RunReport>),
    /// A result SSM cut at 24,000 characters: the S3 key of the agent's copy of it.
    Truncated {
        /// `<evidence_folder>/result.json`.
        key: String,
    },
    /// No result: the agent never ran, or printed none.
    Missing,
}

/// Reads the command's stdout. A cut result is only followed into `<prefix>/<case>/`: the
/// instance writes stdout, so a suspect could print any folder.
pub fn read_output(stdout: &str, evidence_prefix: &str, case_id: &str) -> Output {
    // The documents print exactly one line of stdout: the agent's JSON result.
    let Some(line) = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
    else {
        return Output::Missing;
    };
    if let Ok(report) = serde_json::from_str::<RunReport>(line.trim()) {
        return Output::Report(Box::new(report));
    }
    if !(line.ends_with(SSM_TRUNCATED) || stdout.len() >= SSM_MAX_STDOUT - SSM_TRUNCATED.len()) {
        return Output::Missing;
    }
    match truncated_folder(line, evidence_prefix, case_id) {
        Some(folder) => Output::Truncated {
            key: format!("{folder}/{RESULT_OBJECT}"),
        },
        None => Output::Missing,
    }
}

/// The `evidence_folder` of a cut result line, if it is a folder of this case under the
/// evidence prefix, in the characters the agent uses for folders.
fn truncated_folder(line: &str, evidence_prefix: &str, case_id: &str) -> Option<String> {
    const FIELD: &str = "\"evidence_folder\":\"";
    let start = line.find(FIELD)? + FIELD.len();
    let rest = line.get(start..)?;
    let folder = &rest[..rest.find('"')?];
    let under = if evidence_prefix.is_empty() {
        format!("{case_id}/")
    } else {
        format!("{evidence_prefix}/{case_id}/")
    };
    let safe = folder
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'));
    let tail = folder.strip_prefix(&under)?;
    (safe
        && !tail.is_empty()
        && !folder.contains("//")
        && tail
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != ".."))
    .then(|| folder.to_owned())
}

/// What the command's state means for the workflow, given its stdout's result.
pub fn interpret(
    sent: &SentCommand,
    invocation: &Invocation,
    report: Option<RunReport>,
) -> Result<AcquisitionResult> {
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
            "{what} acquisition {} ended {} without an agent result on stdout (the agent never ran, or \
             printed none); stderr: {}",
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

/// Why the SSM Agent's download of the agent failed, in words that name the fix; None when the
/// download step did not fail.
pub fn download_failure(
    config: &Config,
    sent: &SentCommand,
    download: &Invocation,
) -> Option<String> {
    if download.status != "Failed" {
        return None;
    }
    let object = format!(
        "s3://{}/agent/{}/airf-agent",
        config.artifact_bucket, config.agent_version
    );
    let said = download.stderr.trim();
    let cause = if said.contains("403") || said.contains("AccessDenied") {
        format!(
            "the artifact bucket refused it (403 AccessDenied). The SSM Agent downloads with the instance's \
             credentials: the role of {} (or, when Default Host Management Configuration is on, the DHMC \
             role the SSM Agent registered with). Allow that role s3:GetObject on {object} (and kms:Decrypt \
             if the bucket's key is a KMS key), check the artifact bucket's policy for a Deny, then tag the \
             instance Analyze again",
            config.acquisition_profile_name
        )
    } else if said.contains("404") || said.contains("NoSuchKey") {
        format!(
            "there is no such object: check AIRF_AGENT_VERSION ({}) and that packaging/publish.sh \
             uploaded that release to the artifact bucket",
            config.agent_version
        )
    } else {
        "check the artifact bucket, its region and the instance's route to S3".to_owned()
    };
    Some(format!(
        "{} acquisition {}: the SSM Agent could not download the agent from {object} (document step \
         {DOWNLOAD_STEP} {}: {}): {cause}",
        sent.kind.as_str(),
        sent.command_id,
        download.status,
        if said.is_empty() {
            "(no error text)"
        } else {
            said
        },
    ))
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
    config: &Config,
    case_id: &str,
    subject: &Subject,
    sent: &SentCommand,
) -> Result<AcquisitionResult> {
    let invocation = cloud
        .command_invocation(&subject.target, &sent.command_id, &sent.plugin)
        .await?;
    // Empty while the command runs (SSM returns output only once the step ended): no S3 read.
    let report = match read_output(&invocation.stdout, &config.evidence_prefix, case_id) {
        Output::Report(report) => Some(*report),
        Output::Truncated { key } => {
            let bytes = cloud
                .get_object(&config.evidence_bucket, &key)
                .await?
                .map(|o| o.bytes)
                .ok_or_else(|| {
                    Error::failed(format!(
                        "{} acquisition {}: SSM cut the agent's result at 24,000 characters and \
                         s3://{}/{key}, the agent's copy of it, does not exist",
                        sent.kind.as_str(),
                        sent.command_id,
                        config.evidence_bucket
                    ))
                })?;
            let report: RunReport = serde_json::from_slice(&bytes).map_err(|e| {
                Error::failed(format!(
                    "s3://{}/{key} is not an agent result: {e}",
                    config.evidence_bucket
                ))
            })?;
            let folder = key.strip_suffix(&format!("/{RESULT_OBJECT}"));
            if report.case != case_id || Some(report.evidence_folder.as_str()) != folder {
                return Err(Error::failed(format!(
                    "s3://{}/{key} is the result of case {:?}, folder {:?}, not of this run",
                    config.evidence_bucket, report.case, report.evidence_folder
                )));
            }
            Some(report)
        }
        Output::Missing => None,
    };
    let outcome = interpret(sent, &invocation, report);
    if let Ok(done) = &outcome
        && sent.kind == EvidenceKind::Triage
    {
        // The responder's first question, answered before memory is even taken.
        if let Some(headline) = done.report.sources.iter().find_map(|s| s.triage.as_ref()) {
            notify(
                cloud,
                config,
                case_id,
                &subject.target,
                "triage: what is running",
                &triage_summary(headline, &done.report.evidence_folder),
            )
            .await?;
        }
    }
    if outcome.is_err() && invocation.status != "Success" {
        // The shell step alone cannot tell why the agent is missing: the download step can.
        if let Ok(download) = cloud
            .command_invocation(&subject.target, &sent.command_id, DOWNLOAD_STEP)
            .await
            && let Some(why) = download_failure(config, sent, &download)
        {
            return Err(Error::failed(why));
        }
    }
    outcome
}

/// Most entries of each list in a notification (the manifest has them all).
const HEADLINE_ITEMS: usize = 10;

/// A triage's headline facts in plain words: processes running deleted or memfd executables,
/// listening sockets, UID-0 accounts, and modules seen in only one list.
pub fn triage_summary(h: &Headline, evidence_folder: &str) -> String {
    let more = |n: usize| {
        if n > HEADLINE_ITEMS {
            format!(
                "\n  ... and {} more (triage.manifest.json)",
                n - HEADLINE_ITEMS
            )
        } else {
            String::new()
        }
    };
    let mut out = format!("{} processes.\n", h.processes);
    if h.deleted_exe_processes.is_empty() {
        out.push_str("No process runs a deleted or memfd executable.\n");
    } else {
        out.push_str("SUSPECT: processes running a deleted or memfd executable (recovered into the case folder):\n");
        for p in h.deleted_exe_processes.iter().take(HEADLINE_ITEMS) {
            out.push_str(&format!("  pid {} {} -> {}\n", p.pid, p.name, p.exe));
        }
        out.push_str(&more(h.deleted_exe_processes.len()));
    }
    out.push_str("Listening:\n");
    for l in h.listening.iter().take(HEADLINE_ITEMS) {
        let pids: Vec<String> = l.pids.iter().map(u32::to_string).collect();
        out.push_str(&format!(
            "  {} {} (pid {})\n",
            l.protocol,
            l.local,
            pids.join(",")
        ));
    }
    out.push_str(&more(h.listening.len()));
    let uid0: Vec<String> = h.uid0_accounts.iter().map(ToString::to_string).collect();
    out.push_str(&format!("UID 0 accounts: {}\n", uid0.join(", ")));
    if uid0.len() > 1 {
        out.push_str("SUSPECT: more than one account has UID 0.\n");
    }
    for m in h.module_mismatches.iter().take(HEADLINE_ITEMS) {
        out.push_str(&format!("SUSPECT: module {m}\n"));
    }
    out.push_str(&format!(
        "Everything: {evidence_folder}/triage.manifest.json\n"
    ));
    out
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

    /// `interpret` on what the stdout holds, as `status` reads it (no S3 copy here).
    fn interpret(sent: &SentCommand, inv: &Invocation) -> Result<AcquisitionResult> {
        let report = match read_output(&inv.stdout, "evidence", "IR-1") {
            Output::Report(r) => Some(*r),
            _ => None,
        };
        super::interpret(sent, inv, report)
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

    #[test]
    fn triage_runs_its_own_document_with_a_short_timeout() {
        let (doc, plugin, p) = command(&test_config(), "IR-1", &EvidenceKind::Triage).unwrap();
        assert_eq!(
            (doc.as_str(), plugin),
            ("airf-acquire-triage", "CollectTriage")
        );
        assert_eq!(p["ExecutionTimeout"], vec!["600".to_owned()]);
        assert!(!p.contains_key("Devices"));
    }

    #[test]
    fn the_triage_notification_names_the_suspects_and_stays_short() {
        use airf_evidence::triage::{Listener, SuspectProcess, Text};
        let h = Headline {
            processes: 120,
            deleted_exe_processes: (0..15)
                .map(|i| SuspectProcess {
                    pid: 100 + i,
                    name: Text::from("x"),
                    exe: Text(b"/tmp/x\n (deleted)".to_vec()),
                })
                .collect(),
            listening: vec![Listener {
                protocol: "tcp".into(),
                local: "0.0.0.0:4444".into(),
                pids: vec![7],
            }],
            uid0_accounts: vec![Text::from("root"), Text::from("toor")],
            module_mismatches: vec!["rk: in /sys/module, not in /proc/modules".into()],
        };
        let text = triage_summary(&h, "e/IR-1/i-1/t");
        assert!(text.contains("pid 100 x -> /tmp/x\\n (deleted)"), "{text}");
        assert!(text.contains("... and 5 more"), "{text}");
        assert!(text.contains("tcp 0.0.0.0:4444 (pid 7)"), "{text}");
        assert!(text.contains("more than one account has UID 0"), "{text}");
        assert!(text.contains("SUSPECT: module rk"), "{text}");
        assert!(text.contains("e/IR-1/i-1/t/triage.manifest.json"), "{text}");
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

    /// A disk run's result with this many sources, each with a long error: well over 24,000
    /// characters on one line.
    fn long_result(folder: &str) -> String {
        let source = |i: usize| {
            format!(
                r#"{{"source":"/dev/nvme{i}n1","status":"completed_with_read_errors","raw_size":1,"compressed_size":1,"unreadable_bytes":4096,"unreadable_ranges":{i},"duration_seconds":1.0,"throughput_mb_s":1.0,"error":"{}"}}"#,
                "unreadable sector range ".repeat(20)
            )
        };
        let sources: Vec<String> = (0..60).map(source).collect();
        format!(
            r#"{{"command":"disk","status":"completed_with_read_errors","exit_code":3,"case":"IR-1","evidence_folder":"{folder}","sources":[{}],"errors":[],"duration_seconds":1.0}}"#,
            sources.join(",")
        )
    }

    fn sent_disk() -> SentCommand {
        SentCommand {
            command_id: "c-1".into(),
            document: "airf-acquire-disk".into(),
            plugin: "AcquireDisks".into(),
            kind: EvidenceKind::Disk,
        }
    }

    fn subject() -> Subject {
        Subject {
            target: crate::fake::facts("i-0123456789abcdef0").target,
            claim: 1,
        }
    }

    /// SSM keeps the first 24,000 characters of stdout: the result is read whole from the copy
    /// the agent stored beside its evidence.
    #[tokio::test]
    async fn a_result_longer_than_ssm_keeps_is_read_whole_from_the_agents_copy() {
        let config = test_config();
        let folder = "evidence/IR-1/ip-10-0-0-1/20261129T180000Z";
        let result = long_result(folder);
        assert!(result.len() > 24_000);
        let cloud = crate::fake::FakeCloud::with(crate::fake::facts("i-0123456789abcdef0"));
        cloud.lock().invocation = Some(Invocation {
            status: "Failed".into(),
            stdout: format!("{result}\n"),
            stderr: String::new(),
        });
        let cut = cloud
            .command_invocation(&subject().target, "c-1", "AcquireDisks")
            .await
            .unwrap();
        assert_eq!(cut.stdout.len(), 24_000, "the fake cuts as SSM does");
        cloud.lock().objects.insert(
            (
                config.evidence_bucket.clone(),
                format!("{folder}/result.json"),
            ),
            result.clone().into_bytes(),
        );
        let done = status(&cloud, &config, "IR-1", &subject(), &sent_disk())
            .await
            .unwrap();
        assert_eq!(done.report.sources.len(), 60);
        assert_eq!(
            serde_json::to_value(&done.report).unwrap(),
            serde_json::from_str::<serde_json::Value>(&result).unwrap()
        );
        // Another case's folder, or one outside the prefix, is never read.
        for other in [
            "evidence/IR-2/h/t",
            "elsewhere/IR-1/h/t",
            "evidence/IR-1/../IR-2/t",
        ] {
            let cut = ssm_cut(&long_result(other));
            assert_eq!(
                read_output(&cut, "evidence", "IR-1"),
                Output::Missing,
                "{other}"
            );
        }
    }

    fn ssm_cut(text: &str) -> String {
        crate::fake::ssm_prefix(text, SSM_MAX_STDOUT)
    }

    /// The SSM Agent's aws:downloadContent refused by the artifact bucket: the step fails with
    /// the cause and what to change, not only "the agent was not downloaded".
    #[tokio::test]
    async fn a_refused_download_names_the_role_and_the_object_to_fix() {
        let config = test_config();
        let cloud = crate::fake::FakeCloud::with(crate::fake::facts("i-0123456789abcdef0"));
        cloud.lock().invocation = Some(Invocation {
            status: "Failed".into(),
            stdout: r#"{"command":"disk","status":"failed","exit_code":1,"error":"agent not downloaded to /dev/shm/airf-dl/airf-agent: check ArtifactBucket, Region, AgentVersion and the instance role"}"#.into(),
            stderr: "airf: agent not downloaded to /dev/shm/airf-dl/airf-agent".into(),
        });
        cloud.lock().step_invocations.insert(
            DOWNLOAD_STEP.into(),
            Invocation {
                status: "Failed".into(),
                stdout: String::new(),
                stderr: "http request failed. status:403 Forbidden statuscode:403".into(),
            },
        );
        let e = status(&cloud, &config, "IR-1", &subject(), &sent_disk())
            .await
            .unwrap_err();
        let m = e.to_string();
        assert!(
            matches!(e, Error::Failed(_))
                && m.contains("403 AccessDenied")
                && m.contains("s3:GetObject on s3://forensics-artifacts/agent/")
                && m.contains(DOWNLOAD_STEP),
            "{m}"
        );
    }

    /// The step names the controller asks for are the documents' own.
    #[test]
    fn the_step_names_are_the_documents() {
        for (doc, shell) in [
            (
                include_str!("../../../ssm-documents/airf-acquire-memory.json"),
                "AcquireMemory",
            ),
            (
                include_str!("../../../ssm-documents/airf-acquire-disk.json"),
                "AcquireDisks",
            ),
        ] {
            let doc: serde_json::Value = serde_json::from_str(doc).unwrap();
            let names: Vec<&str> = doc["mainSteps"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|s| s["name"].as_str())
                .collect();
            assert!(
                names.contains(&DOWNLOAD_STEP) && names.contains(&shell),
                "{names:?}"
            );
        }
    }

    proptest::proptest! {
        /// stdout is the instance's: whatever it holds, a key is only ever one under this case.
        #[test]
        fn only_keys_of_this_case_are_followed(line in "\\{\"evidence_folder\":\"(evidence/IR-1/)?[a-zA-Z0-9./_-]{0,40}\"[ -~]{0,40}", pad in 0usize..30_000) {
            let stdout = ssm_cut(&format!("{line}{}", "x".repeat(pad)));
            if let Output::Truncated { key } = read_output(&stdout, "evidence", "IR-1") {
                proptest::prop_assert!(key.starts_with("evidence/IR-1/") && key.ends_with("/result.json"));
                proptest::prop_assert!(key.split('/').all(|p| !p.is_empty() && p != "." && p != ".."), "{}", key);
            }
        }
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
