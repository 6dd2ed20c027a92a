//! Runs a script in the test VM (tests/vm/run.sh): a Debian kernel under QEMU with the static
//! agent and lime.ko in a busybox initramfs; an S3 server on the host is reachable from the guest.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, ensure};

use crate::{S3Server, repo_root};

/// Guest port that reaches the S3 server on the host.
pub const GUEST_S3_PORT: u16 = 9000;

/// A path from the environment that must exist (set by tests/vm/run-tests.sh).
pub fn env_path(name: &str) -> Result<PathBuf> {
    let p = std::env::var_os(name).map(PathBuf::from).with_context(|| {
        format!("{name} is not set; run these tests with tests/vm/run-tests.sh")
    })?;
    ensure!(p.exists(), "{name}={} does not exist", p.display());
    Ok(p)
}

/// What a guest run printed.
#[derive(Debug)]
pub struct GuestRun {
    /// Exit status of the script.
    pub code: i32,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr (and the harness's).
    pub stderr: String,
}

/// Boots the guest with the static agent at /usr/bin/airf-agent (and lime.ko at /root/lime.ko)
/// and runs `script` in it; `server`, when given, is reachable as AWS_ENDPOINT_URL.
pub fn guest(server: Option<&S3Server>, extra: &[&str], script: &str) -> Result<GuestRun> {
    guest_via(server, None, extra, script)
}

/// Like [`guest`], with the guest's S3 traffic sent to `127.0.0.1:via` on the host (a
/// [`crate::slow_link::SlowLink`] in front of the server) instead of to the server itself.
pub fn guest_via(
    server: Option<&S3Server>,
    via: Option<u16>,
    extra: &[&str],
    script: &str,
) -> Result<GuestRun> {
    let agent = env_path("AIRF_STATIC_AGENT")?;
    let lime = env_path("AIRF_LIME_KO")?;
    let mut cmd = Command::new(repo_root().join("tests/vm/run.sh"));
    cmd.args(["--mem", "512M", "--smp", "2", "--timeout", "900"])
        .arg("--file")
        .arg(format!("{}:/usr/bin/airf-agent", agent.display()))
        .arg("--file")
        .arg(format!("{}:/root/lime.ko", lime.display()))
        .args(["--env", "AWS_EC2_METADATA_DISABLED=true"]);
    if let Some(s) = server {
        for (k, v) in &s.env {
            if k == "AWS_ENDPOINT_URL" {
                let port = match via {
                    Some(p) => p.to_string(),
                    None => v
                        .rsplit(':')
                        .next()
                        .context("endpoint without a port")?
                        .to_owned(),
                };
                cmd.arg("--forward").arg(format!("{GUEST_S3_PORT}:{port}"));
                cmd.arg("--env").arg(format!(
                    "AWS_ENDPOINT_URL=http://10.0.2.100:{GUEST_S3_PORT}"
                ));
            } else if k.starts_with("AWS_") || k == "AIRF_TEST_BUCKET" {
                cmd.arg("--env").arg(format!("{k}={v}"));
            }
        }
    }
    cmd.args(extra).arg("--").arg(script);
    let out = cmd.output().context("running tests/vm/run.sh")?;
    let run = GuestRun {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    ensure!(
        run.code != 124 && run.code != 125,
        "the VM harness failed ({}): {}",
        run.code,
        run.stderr
    );
    Ok(run)
}
