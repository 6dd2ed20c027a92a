//! Failure paths end to end: the server dies mid-upload, a signal arrives, bad input. In every
//! case: non-zero exit, a clear message, no manifest, and no multipart upload left behind.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use airf_e2e::{AgentRun, S3Server, ServerKind, agent_bin, run_agent};
use anyhow::{Context, Result, ensure};

/// An incompressible file, large enough that the upload takes a few seconds.
fn random_file(dir: &std::path::Path, mib: usize) -> Result<std::path::PathBuf> {
    let path = dir.join("random.img");
    let mut f = std::fs::File::create(&path)?;
    std::io::copy(
        &mut std::io::Read::take(std::fs::File::open("/dev/urandom")?, (mib as u64) << 20),
        &mut f,
    )?;
    Ok(path)
}

fn wait_for_upload(server: &S3Server, child: &mut std::process::Child) -> Result<()> {
    let start = Instant::now();
    while server.open_uploads()?.is_empty() {
        ensure!(
            child.try_wait()?.is_none(),
            "agent exited before the upload started"
        );
        ensure!(
            start.elapsed() < Duration::from_secs(60),
            "no multipart upload appeared"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn finish(child: std::process::Child) -> Result<AgentRun> {
    Ok(AgentRun::from_output(&child.wait_with_output()?))
}

fn slow_upload(
    server: &S3Server,
    source: &std::path::Path,
    prefix: &str,
) -> Result<std::process::Child> {
    Ok(server
        .command(agent_bin()?)
        .env("AWS_MAX_ATTEMPTS", "2")
        .arg("disk")
        .arg(source)
        .args([
            "--to",
            &format!("s3://{}/{prefix}/", server.bucket),
            "--concurrency",
            "1",
            "--threads",
            "1",
            "--json",
        ])
        .args([
            "--part-size",
            "5MiB",
            "--abort-timeout",
            "60",
            "--no-progress",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?)
}

#[test]
fn server_killed_mid_upload_leaves_nothing_behind() -> Result<()> {
    let server = S3Server::start(ServerKind::Garage)?;
    let tmp = tempfile::tempdir()?;
    let source = random_file(tmp.path(), 768)?;
    let mut child = slow_upload(&server, &source, "crash")?;
    wait_for_upload(&server, &mut child)?;
    std::thread::sleep(Duration::from_millis(300));
    server.kill()?;
    // Down long enough for the agent's retries to give up, then back for the clean-up.
    std::thread::sleep(Duration::from_secs(8));
    server.restart()?;
    let run = finish(child)?;
    ensure!(run.code == 1, "expected exit 1: {run:?}");
    ensure!(run.json["status"] == "failed", "{}", run.stdout);
    let src = &run.json["sources"][0];
    ensure!(
        src["error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot reach the S3 endpoint")),
        "{}",
        run.stdout
    );
    ensure!(src["cleanup"]["clean"] == true, "{}", run.stdout);
    ensure!(
        run.stderr.contains("airf-agent:"),
        "one-line cause on stderr: {}",
        run.stderr
    );
    ensure!(
        server.open_uploads()?.is_empty(),
        "multipart upload left behind"
    );
    ensure!(
        server.keys("crash/")?.is_empty(),
        "objects left behind: {:?}",
        server.keys("crash/")?
    );
    Ok(())
}

#[test]
fn sigterm_aborts_the_upload_and_claims_nothing() -> Result<()> {
    for (sig, code) in [
        (nix::sys::signal::Signal::SIGTERM, 143),
        (nix::sys::signal::Signal::SIGINT, 130),
    ] {
        let server = S3Server::start(ServerKind::Garage)?;
        let tmp = tempfile::tempdir()?;
        let source = random_file(tmp.path(), 512)?;
        let mut child = slow_upload(&server, &source, "sig")?;
        wait_for_upload(&server, &mut child)?;
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id())?);
        nix::sys::signal::kill(pid, sig)?;
        let run = finish(child)?;
        ensure!(run.code == code, "{sig}: expected {code}: {run:?}");
        ensure!(run.json["status"] == "interrupted", "{}", run.stdout);
        ensure!(
            server.open_uploads()?.is_empty(),
            "multipart upload left behind"
        );
        ensure!(server.keys("sig/")?.is_empty(), "objects left behind");
    }
    Ok(())
}

fn agent(args: &[&str]) -> Result<AgentRun> {
    run_agent(
        Command::new(agent_bin()?)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .args(args),
    )
}

#[test]
fn bad_input_is_refused_with_the_fix() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dest = tmp.path().join("out").display().to_string();
    let cases: Vec<(Vec<String>, i32, &str)> = vec![
        (
            vec![
                "disk".into(),
                "/dev/airf-missing".into(),
                "--to".into(),
                dest.clone(),
            ],
            1,
            "no such device",
        ),
        (
            vec![
                "disk".into(),
                tmp.path().display().to_string(),
                "--to".into(),
                dest.clone(),
            ],
            1,
            "is a directory",
        ),
        (
            vec![
                "disk".into(),
                "/dev/null".into(),
                "--to".into(),
                dest.clone(),
            ],
            1,
            "character device",
        ),
        (
            vec![
                "disk".into(),
                "/etc/hostname".into(),
                "--to".into(),
                "s3://".into(),
            ],
            2,
            "missing bucket",
        ),
        (
            vec![
                "disk".into(),
                "/etc/hostname".into(),
                "--to".into(),
                "ftp://x/y".into(),
            ],
            2,
            "unsupported scheme",
        ),
        (
            vec![
                "disk".into(),
                "/etc/hostname".into(),
                "--to".into(),
                "/etc/hostname".into(),
            ],
            2,
            "not a directory",
        ),
        (vec!["disk".into(), "/etc/hostname".into()], 2, "--to"),
        (
            vec!["verify".into(), "s3://bucket-only".into()],
            2,
            "s3://BUCKET/KEY",
        ),
    ];
    for (args, code, words) in cases {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = agent(&refs)?;
        ensure!(
            run.code == code,
            "{args:?}: exit {} not {code}\n{}",
            run.code,
            run.stderr
        );
        ensure!(
            run.stderr.contains(words),
            "{args:?}: stderr lacks {words:?}:\n{}",
            run.stderr
        );
        if args.first().is_some_and(|c| c == "disk") && args.len() > 2 {
            ensure!(run.json["status"] == "failed", "{args:?}: {}", run.stdout);
            ensure!(run.json["exit_code"] == code, "{args:?}: {}", run.stdout);
        }
    }
    ensure!(
        !tmp.path().join("out").exists() || std::fs::read_dir(tmp.path().join("out"))?.count() == 0
    );
    Ok(())
}

/// `--part-size` is an S3 limit: S3 refuses 1 MiB parts as bad usage before any request (nothing
/// is sent to the unreachable endpoint, so no upload can be left open), and a local directory
/// takes them.
#[test]
fn part_size_limits_apply_to_s3_only() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let s3 = run_agent(
        Command::new(agent_bin()?)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .args([
                "disk",
                "/etc/hostname",
                "--to",
                "s3://bucket/prefix/",
                "--part-size",
                "1MiB",
            ]),
    )?;
    ensure!(
        s3.code == 2,
        "S3 with 1 MiB parts: exit {}\n{}",
        s3.code,
        s3.stderr
    );
    ensure!(s3.stderr.contains("5 MiB to 5 GiB"), "{}", s3.stderr);
    ensure!(s3.json["status"] == "failed", "{}", s3.stdout);

    let dest = tmp.path().join("out");
    let local = agent(&[
        "disk",
        "/etc/hostname",
        "--to",
        &dest.display().to_string(),
        "--part-size",
        "1MiB",
    ])?;
    ensure!(
        local.code == 0,
        "local with 1 MiB parts: exit {}\n{}",
        local.code,
        local.stderr
    );
    ensure!(local.json["status"] == "complete", "{}", local.stdout);
    Ok(())
}

#[test]
fn unreadable_file_names_root() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let secret = tmp.path().join("secret.img");
    std::fs::write(&secret, [0u8; 4096])?;
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(agent_bin()?)
        .args(["disk", &secret.display().to_string(), "--to", "-"])
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .context("setpriv (util-linux)")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.code() == Some(1), "{stderr}");
    ensure!(
        stderr.contains("permission denied") && stderr.contains("root"),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn unknown_bucket_and_bad_credentials_fail_before_reading() -> Result<()> {
    let server = S3Server::start(ServerKind::Garage)?;
    let run = run_agent(server.command(agent_bin()?).args([
        "disk",
        "/etc/hostname",
        "--to",
        "s3://no-such-bucket-airf/x/",
        "--json",
    ]))?;
    ensure!(run.code == 1, "{run:?}");
    ensure!(
        run.stderr.contains("NoSuchBucket") && run.stderr.contains("create the bucket"),
        "{}",
        run.stderr
    );
    ensure!(
        run.json["sources"][0]["raw_size"] == 0,
        "nothing should be read: {}",
        run.stdout
    );

    let run = run_agent(
        server
            .command(agent_bin()?)
            .env(
                "AWS_SECRET_ACCESS_KEY",
                "0000000000000000000000000000000000000000000000000000000000000000",
            )
            .args([
                "disk",
                "/etc/hostname",
                "--to",
                &format!("s3://{}/x/", server.bucket),
                "--json",
            ]),
    )?;
    ensure!(run.code == 1, "{run:?}");
    ensure!(run.stderr.contains("credentials"), "{}", run.stderr);
    ensure!(server.open_uploads()?.is_empty());
    Ok(())
}
