//! EC2 identity from IMDSv2: a stand-in metadata service on 127.0.0.1 (the agent is pointed at
//! it with the standard AWS_EC2_METADATA_SERVICE_ENDPOINT) must land in the manifest and name
//! the evidence folder; with AWS_EC2_METADATA_DISABLED=true nothing is asked.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use airf_e2e::{agent_bin, run_agent};
use anyhow::{Context, Result, ensure};

const DOC: &str = concat!(
    r#"{"accountId":"123456789012","availabilityZone":"eu-west-1b","imageId":"ami-0abc","#,
    r#""instanceId":"i-0fa4e1d5c0ffee123","instanceType":"m6i.large","region":"eu-west-1","#,
    r#""version":"2017-09-30"}"#
);

/// A minimal IMDSv2: PUT /latest/api/token returns a token; GETs need it.
fn fake_imds() -> Result<(u16, Arc<AtomicUsize>)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let hits = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&hits);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            seen.fetch_add(1, Ordering::SeqCst);
            let mut reader = BufReader::new(&stream);
            let mut request = String::new();
            let _ = reader.read_line(&mut request);
            let mut token_ok = false;
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                token_ok |= lower.starts_with("x-aws-ec2-metadata-token: airf-token");
                if let Some(v) = lower.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; len];
            let _ = reader.read_exact(&mut body);
            let (status, body) = if request.starts_with("PUT /latest/api/token") {
                ("200 OK", "airf-token")
            } else if request.starts_with("GET /latest/dynamic/instance-identity/document")
                && token_ok
            {
                ("200 OK", DOC)
            } else if !token_ok {
                ("401 Unauthorized", "")
            } else {
                ("404 Not Found", "")
            };
            let mut s = &stream;
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\n\
                 X-aws-ec2-metadata-token-ttl-seconds: 21600\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    Ok((port, hits))
}

/// Acquires a small file into `out` with the metadata service at `port`, enabled or not;
/// returns the run and its manifest.
fn acquire_with_imds(
    port: u16,
    disabled: bool,
    out: &std::path::Path,
) -> Result<(airf_e2e::AgentRun, serde_json::Value)> {
    let mut cmd = std::process::Command::new(agent_bin()?);
    if disabled {
        cmd.env("AWS_EC2_METADATA_DISABLED", "true");
    } else {
        cmd.env_remove("AWS_EC2_METADATA_DISABLED");
    }
    let run = run_agent(
        cmd.env(
            "AWS_EC2_METADATA_SERVICE_ENDPOINT",
            format!("http://127.0.0.1:{port}"),
        )
        .args([
            "disk",
            "/etc/hostname",
            "--to",
            &out.display().to_string(),
            "--case",
            "IR-7",
            "--json",
        ]),
    )?;
    ensure!(run.code == 0, "{run:?}");
    let manifest_path = run
        .json
        .pointer("/sources/0/manifest/location")
        .and_then(serde_json::Value::as_str)
        .context("manifest")?;
    let manifest = serde_json::from_slice(&std::fs::read(manifest_path)?)?;
    Ok((run, manifest))
}

#[test]
fn instance_identity_names_the_evidence_and_fills_the_manifest() -> Result<()> {
    let (port, hits) = fake_imds()?;
    let out = tempfile::tempdir()?;
    let (run, manifest) = acquire_with_imds(port, false, out.path())?;
    let folder = run.json["evidence_folder"].as_str().context("folder")?;
    ensure!(folder.contains("/IR-7/i-0fa4e1d5c0ffee123/"), "{folder}");
    let ec2 = &manifest["host"]["ec2"];
    ensure!(
        ec2["instance_id"] == "i-0fa4e1d5c0ffee123" && ec2["account_id"] == "123456789012",
        "{ec2}"
    );
    ensure!(
        ec2["region"] == "eu-west-1" && ec2["instance_type"] == "m6i.large",
        "{ec2}"
    );
    ensure!(
        hits.load(Ordering::SeqCst) >= 2,
        "token and document requests expected"
    );

    // Disabled: no request at all, and no ec2 block.
    let before = hits.load(Ordering::SeqCst);
    let (_, manifest) = acquire_with_imds(port, true, out.path())?;
    ensure!(
        hits.load(Ordering::SeqCst) == before,
        "IMDS was asked although disabled"
    );
    ensure!(manifest["host"].get("ec2").is_none());
    Ok(())
}
