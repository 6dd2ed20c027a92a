//! End-to-end test harness for airf: real S3-compatible servers (Garage, moto), real loop
//! devices with ext4, and the real `airf-agent` binary.
//!
//! Servers are started by `tests/scripts/{garage,moto}.sh`, one per test, on free loopback
//! ports, and stopped when the handle drops. Everything here fails loudly with the command that
//! fixes it (usually `tests/scripts/install-deps.sh`), never skips.
//!
//! Beside the servers, loop devices and agent runs here: [`emulator`] (the controller's AWS
//! world in moto), [`workflow_runner`] (the workflow run by an ASL interpreter, on simulated
//! time), [`asl`] (time budgets and history sizes computed from the workflow definition),
//! [`ssm_agent`] (whether the emulated SSM sees an instance's agent registered),
//! [`guest_evidence`] (real evidence from a guest for a workflow run), [`planted_evidence`]
//! (the evidence an agent would store, without a guest),
//! [`ssm_run_command`] (SSM Run Command played on this machine), [`vm`] (a QEMU guest),
//! [`slow_link`] (a throttling proxy), [`fault_proxy`] (an S3 proxy that drops, delays, refuses
//! and loses requests and responses) and [`s3api_listing`] (the AWS CLI's listings, read
//! strictly). `tests/README.md` says which suite uses what.

pub mod asl;
pub mod ebs_snapshots;
pub mod emulator;
pub mod emulator_faults;
pub mod fault_proxy;
pub mod guest_evidence;
pub mod iam_calls;
pub mod planted_evidence;
pub mod s3api_listing;
pub mod slow_link;
pub mod ssm_agent;
pub mod ssm_run_command;
pub mod vm;
pub mod volatility;
pub mod web_server;
pub mod workflow_runner;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_owned)
        .unwrap_or_default()
}

/// The agent binary under test: `$AIRF_AGENT_BIN`, else the workspace's release or debug build.
pub fn agent_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("AIRF_AGENT_BIN") {
        return Ok(PathBuf::from(p));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    for profile in ["release", "debug"] {
        let p = target.join(profile).join("airf-agent");
        if p.exists() {
            return Ok(p);
        }
    }
    bail!(
        "airf-agent is not built; run `cargo build --release -p airf-agent` \
         (the README's test command does)"
    )
}

/// Which S3 implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// Garage: verifies checksums like S3.
    Garage,
    /// moto_server: quick, verifies nothing.
    Moto,
}

/// A running S3-compatible server; stopped on drop.
#[derive(Debug)]
pub struct S3Server {
    /// Which implementation.
    pub kind: ServerKind,
    dir: tempfile::TempDir,
    /// Environment for clients (endpoint, credentials, region).
    pub env: Vec<(String, String)>,
    /// The bucket created for the test.
    pub bucket: String,
}

fn script(name: &str) -> PathBuf {
    repo_root().join("tests/scripts").join(name)
}

/// Runs `cmd` and fails with its output unless it succeeded.
pub fn run_ok(cmd: &mut Command) -> Result<Output> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

impl S3Server {
    /// Starts a fresh server of `kind` with an empty bucket.
    pub fn start(kind: ServerKind) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("airf-s3-").tempdir()?;
        let name = match kind {
            ServerKind::Garage => "garage.sh",
            ServerKind::Moto => "moto.sh",
        };
        let out = run_ok(Command::new(script(name)).arg("start").arg(dir.path()))?;
        let mut env = Vec::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some((k, v)) = line.strip_prefix("export ").and_then(|l| l.split_once('=')) {
                env.push((k.to_owned(), v.to_owned()));
            }
        }
        let bucket = env
            .iter()
            .find(|(k, _)| k == "AIRF_TEST_BUCKET")
            .map(|(_, v)| v.clone())
            .context("server script printed no bucket")?;
        Ok(Self {
            kind,
            dir,
            env,
            bucket,
        })
    }

    /// Kills the server abruptly (SIGKILL), like a crash or a network cut.
    pub fn kill(&self) -> Result<()> {
        run_ok(
            Command::new(script("garage.sh"))
                .arg("stop")
                .arg(self.dir.path())
                .arg("kill"),
        )
        .map(|_| ())
    }

    /// Starts a killed Garage again with the same data and ports.
    pub fn restart(&self) -> Result<()> {
        run_ok(
            Command::new(script("garage.sh"))
                .arg("restart")
                .arg(self.dir.path()),
        )
        .map(|_| ())
    }

    /// The server's endpoint URL (what clients get as AWS_ENDPOINT_URL).
    pub fn endpoint(&self) -> Result<String> {
        self.env
            .iter()
            .find(|(k, _)| k == "AWS_ENDPOINT_URL")
            .map(|(_, v)| v.clone())
            .context("the server script printed no AWS_ENDPOINT_URL")
    }

    /// The port of the server's endpoint on 127.0.0.1.
    pub fn port(&self) -> Result<u16> {
        let endpoint = self.endpoint()?;
        endpoint
            .rsplit(':')
            .next()
            .and_then(|p| p.trim_end_matches('/').parse().ok())
            .with_context(|| format!("no port in the endpoint {endpoint}"))
    }

    /// A command with this server's client environment.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(program);
        c.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        c
    }

    /// Runs the AWS CLI against this server.
    pub fn aws(&self, args: &[&str]) -> Result<Output> {
        run_ok(self.command("aws").args(args))
    }

    /// Downloads an object.
    pub fn get(&self, key: &str) -> Result<Vec<u8>> {
        Ok(self
            .aws(&["s3", "cp", &format!("s3://{}/{key}", self.bucket), "-"])?
            .stdout)
    }

    /// Uploads an object.
    pub fn put(&self, key: &str, body: &Path) -> Result<()> {
        self.aws(&[
            "s3",
            "cp",
            &body.display().to_string(),
            &format!("s3://{}/{key}", self.bucket),
        ])
        .map(|_| ())
    }

    /// Every key under `prefix`; an error, never an empty list, when the listing cannot be read.
    pub fn keys(&self, prefix: &str) -> Result<Vec<String>> {
        let out = self.aws(&[
            "s3api",
            "list-objects-v2",
            "--bucket",
            &self.bucket,
            "--prefix",
            prefix,
            "--output",
            "json",
        ])?;
        s3api_listing::object_keys(&out.stdout)
            .with_context(|| format!("listing s3://{}/{prefix}", self.bucket))
    }

    /// The multipart uploads still open under `prefix`, as (key, upload id); an error, never
    /// an empty list, when the listing cannot be read.
    pub fn open_uploads_under(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        let out = self.aws(&[
            "s3api",
            "list-multipart-uploads",
            "--bucket",
            &self.bucket,
            "--prefix",
            prefix,
            "--output",
            "json",
        ])?;
        s3api_listing::uploads(&out.stdout).with_context(|| {
            format!(
                "listing the open uploads under s3://{}/{prefix}",
                self.bucket
            )
        })
    }

    /// The ids of the multipart uploads still open in the bucket; an error, never an empty
    /// list, when the listing cannot be read.
    pub fn open_uploads(&self) -> Result<Vec<String>> {
        let out = self.aws(&[
            "s3api",
            "list-multipart-uploads",
            "--bucket",
            &self.bucket,
            "--output",
            "json",
        ])?;
        s3api_listing::upload_ids(&out.stdout)
            .with_context(|| format!("listing the open uploads of {}", self.bucket))
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let name = match self.kind {
            ServerKind::Garage => "garage.sh",
            ServerKind::Moto => "moto.sh",
        };
        let _ = Command::new(script(name))
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}

/// A read-only loop device over an ext4 image holding known files; detached on drop.
#[derive(Debug)]
pub struct LoopDevice {
    /// `/dev/loopN`.
    pub device: PathBuf,
    /// The backing image file.
    pub image: PathBuf,
    _dir: tempfile::TempDir,
}

impl LoopDevice {
    /// Builds an ext4 filesystem of `size_mib` holding `files` (relative path, contents) with
    /// `mkfs.ext4 -d` (no mount needed) and attaches it read-only.
    pub fn ext4(size_mib: u64, files: &[(&str, &[u8])]) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("airf-loop-").tempdir()?;
        let root = dir.path().join("root");
        for (rel, body) in files {
            let p = root.join(rel);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&p, body)?;
        }
        std::fs::create_dir_all(&root)?;
        let image = dir.path().join("disk.img");
        run_ok(
            Command::new("mkfs.ext4")
                .args(["-q", "-F", "-d"])
                .arg(&root)
                .arg(&image)
                .arg(format!("{size_mib}M")),
        )
        .context("mkfs.ext4 (apt-get install e2fsprogs)")?;
        let out = run_ok(
            Command::new("losetup")
                .args(["--find", "--show", "--read-only"])
                .arg(&image),
        )
        .context("losetup needs root and loop device support")?;
        let device = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        Ok(Self {
            device,
            image,
            _dir: dir,
        })
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.device).output();
    }
}

/// One run of the agent.
#[derive(Debug)]
pub struct AgentRun {
    /// Exit status (-1 if killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// The JSON result (stdout, or stderr's JSON tail for `--to -`), when there is one.
    pub json: serde_json::Value,
}

impl AgentRun {
    /// The run that ended with `out`. A failure before the agent could say anything (a usage
    /// error, a crash) leaves `json` Null, which no check on a field accepts.
    pub fn from_output(out: &Output) -> Self {
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let json = serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null);
        Self {
            code: out.status.code().unwrap_or(-1),
            stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            json,
        }
    }
}

/// Runs `cmd` (an agent command) and parses its JSON result.
pub fn run_agent(cmd: &mut Command) -> Result<AgentRun> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    Ok(AgentRun::from_output(&out))
}

/// SHA-256 of a file or device, hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

/// SHA-256 of bytes, hex.
pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Decompresses a zstd stream with the `zstd` command-line tool, as an analyst would.
pub fn zstd_decompress(compressed: &[u8]) -> Result<Vec<u8>> {
    use std::io::Write;
    let mut child = Command::new("zstd")
        .args(["-d", "-c", "-q"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("zstd (apt-get install zstd)")?;
    let mut stdin = child.stdin.take().context("zstd stdin")?;
    let data = compressed.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output()?;
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("writer thread panicked"))??;
    if !out.status.success() {
        bail!("zstd -d failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(out.stdout)
}

/// Lists every path in a filesystem image with Sleuth Kit's `fls -r -p`.
pub fn fls(image: &Path) -> Result<String> {
    let out = run_ok(Command::new("fls").args(["-r", "-p"]).arg(image))
        .context("fls (apt-get install sleuthkit)")?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
