//! `airf-agent verify` against evidence that was moved, rewritten or countersigned: the real
//! agent acquires small disk image files into Garage (and moto, for KMS), then the stored
//! objects are tampered with the way someone with write access to the bucket could.
//!
//! The controller's countersignature is simulated with independent tools: `openssl dgst -sign`
//! with a key from `openssl ecparam -name prime256v1 -genkey`, and `aws kms sign` against moto.

use std::path::{Path, PathBuf};
use std::process::Command;

use airf_e2e::{S3Server, ServerKind, agent_bin, run_agent, run_ok, sha256, zstd_decompress};
use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

const KEY_ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/e2e-signing-key";

/// One acquisition's objects.
struct Stored {
    image: String,
    manifest: String,
}

/// Writes a 1 MiB disk image file named `disk.img` under `dir` (the same name for every case,
/// so two cases' objects have the same names) and acquires it with the real agent.
fn acquire(server: &S3Server, dir: &Path, case: &str, seed: u32) -> Result<Stored> {
    std::fs::create_dir_all(dir)?;
    let file = dir.join("disk.img");
    let mut x = seed.max(1);
    let data: Vec<u8> = (0..1 << 20)
        .map(|i: u32| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            if (i / 4096).is_multiple_of(2) {
                0
            } else {
                x as u8
            }
        })
        .collect();
    std::fs::write(&file, data)?;
    let run = run_agent(
        server
            .command(agent_bin()?)
            .arg("disk")
            .arg(&file)
            .args(["--to", &format!("s3://{}/ev/", server.bucket)])
            .args(["--case", case, "--frame-size", "64KiB", "--json"]),
    )?;
    ensure!(run.code == 0, "agent failed: {run:?}");
    let src = run.json.pointer("/sources/0").context("no source")?;
    let key = |p: &str| {
        src.pointer(p)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .with_context(|| format!("no {p} in {src}"))
    };
    Ok(Stored {
        image: key("/image/key")?,
        manifest: key("/manifest/key")?,
    })
}

fn verify(server: &S3Server, manifest: &str, extra: &[&str]) -> Result<airf_e2e::AgentRun> {
    run_agent(
        server
            .command(agent_bin()?)
            .args(["verify", manifest, "--json"])
            .args(extra),
    )
}

fn uri(server: &S3Server, key: &str) -> String {
    format!("s3://{}/{key}", server.bucket)
}

/// The names of the failed checks; an error when the result has no readable checks list, so
/// that a crash never reads as "nothing failed".
fn failed(run: &airf_e2e::AgentRun) -> Result<Vec<String>> {
    let checks = run
        .json
        .get("checks")
        .and_then(Value::as_array)
        .with_context(|| format!("no checks in the result: {run:?}"))?;
    let mut out = Vec::new();
    for c in checks {
        let name = c
            .get("check")
            .and_then(Value::as_str)
            .with_context(|| format!("a check without a name: {c}"))?;
        match c.get("ok").and_then(Value::as_bool) {
            Some(true) => {}
            Some(false) => out.push(name.to_owned()),
            None => anyhow::bail!("a check without ok: {c}"),
        }
    }
    Ok(out)
}

fn check<'a>(run: &'a airf_e2e::AgentRun, name: &str) -> Option<&'a Value> {
    run.json
        .get("checks")?
        .as_array()?
        .iter()
        .find(|c| c.get("check") == Some(&json!(name)))
}

fn field<'a>(v: &'a Value, pointer: &str) -> Result<&'a Value> {
    v.pointer(pointer)
        .with_context(|| format!("no {pointer} in the manifest"))
}

fn put_bytes(server: &S3Server, dir: &Path, key: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join("upload.tmp");
    std::fs::write(&tmp, bytes)?;
    server.put(key, &tmp)
}

/// The statement the controller signs about the manifest stored at `manifest_key`.
fn statement(server: &S3Server, manifest_key: &str, key_id: &str) -> Result<String> {
    let bytes = server.get(manifest_key)?;
    let m: Value = serde_json::from_slice(&bytes)?;
    let host = manifest_key
        .rsplit('/')
        .nth(2)
        .context("a manifest key without a host folder")?;
    Ok(json!({
        "type": "airf-countersignature/1",
        "case": field(&m, "/case")?,
        "host": host,
        "manifest": {"bucket": server.bucket, "key": manifest_key,
                     "sha256": sha256(&bytes), "size": bytes.len()},
        "image": {"bucket": field(&m, "/image/bucket")?, "key": field(&m, "/image/key")?,
                  "sha256": field(&m, "/compressed/sha256")?,
                  "size": field(&m, "/compressed/size")?},
        "raw_sha256": field(&m, "/raw/sha256")?,
        "verified_at": "2026-12-02T06:00:00Z",
        "execution_arn": "arn:aws:states:us-east-1:111122223333:execution:airf:e2e",
        "key_id": key_id,
    })
    .to_string())
}

fn signature_key(manifest_key: &str) -> String {
    format!(
        "{}.sig.json",
        manifest_key.strip_suffix(".json").unwrap_or(manifest_key)
    )
}

fn countersignature(statement: &str, key_id: &str, signature_b64: &str) -> Result<Vec<u8>> {
    Ok(serde_json::to_vec(&json!({
        "statement": statement,
        "algorithm": "ECDSA_SHA_256",
        "key_id": key_id,
        "signature": signature_b64.trim(),
    }))?)
}

/// A P-256 key pair made by openssl: (private PEM, public PEM).
fn openssl_key(dir: &Path, name: &str) -> Result<(PathBuf, PathBuf)> {
    let private = dir.join(format!("{name}.key.pem"));
    let public = dir.join(format!("{name}.pub.pem"));
    run_ok(
        Command::new("openssl")
            .args(["ecparam", "-name", "prime256v1", "-genkey", "-out"])
            .arg(&private),
    )
    .context("openssl (apt-get install openssl)")?;
    run_ok(
        Command::new("openssl")
            .args(["ec", "-pubout", "-in"])
            .arg(&private)
            .arg("-out")
            .arg(&public),
    )?;
    Ok((private, public))
}

/// Signs `statement` with openssl as the controller signs with KMS: ECDSA SHA-256 over the
/// statement's bytes, DER, base64.
fn openssl_sign(dir: &Path, private: &Path, statement: &str) -> Result<String> {
    let msg = dir.join("statement.json");
    let sig = dir.join("statement.sig");
    std::fs::write(&msg, statement)?;
    run_ok(
        Command::new("openssl")
            .args(["dgst", "-sha256", "-sign"])
            .arg(private)
            .arg("-out")
            .arg(&sig)
            .arg(&msg),
    )?;
    let b64 = run_ok(
        Command::new("openssl")
            .args(["base64", "-A", "-in"])
            .arg(&sig),
    )?;
    Ok(String::from_utf8(b64.stdout)?)
}

#[test]
fn location_format_and_countersignature_in_garage() -> Result<()> {
    let server = S3Server::start(ServerKind::Garage)?;
    let tmp = tempfile::tempdir()?;
    let a = acquire(&server, &tmp.path().join("a"), "IR-A", 1)?;
    let b = acquire(&server, &tmp.path().join("b"), "IR-B", 2)?;
    let a_uri = uri(&server, &a.manifest);

    // As stored: intact, and said to be unsigned.
    let ok = verify(&server, &a_uri, &[])?;
    ensure!(ok.code == 0, "{ok:?}");
    let sig = check(&ok, "signature").context("no signature check")?;
    ensure!(
        sig["skipped"] == json!(true) && sig["actual"] == json!("unsigned"),
        "{sig}"
    );
    for name in ["location: bucket", "location: image key", "seek table"] {
        ensure!(
            check(&ok, name).is_some_and(|c| c["ok"] == json!(true)),
            "{name}: {}",
            ok.stdout
        );
    }

    // An analyst's `aws s3 sync` copy verifies; moved out of its folders it needs --relocated.
    let local = tmp.path().join("sync");
    server.aws(&[
        "s3",
        "sync",
        &uri(&server, "ev/"),
        &local.display().to_string(),
    ])?;
    let synced = local.join(b.manifest.trim_start_matches("ev/"));
    let run = run_agent(
        Command::new(agent_bin()?)
            .arg("verify")
            .arg(&synced)
            .arg("--json"),
    )?;
    ensure!(run.code == 0, "synced copy: {run:?}");
    let flat = tmp.path().join("flat");
    std::fs::create_dir(&flat)?;
    for key in [&b.manifest, &b.image] {
        let name = key.rsplit('/').next().context("a key without a name")?;
        std::fs::copy(local.join(key.trim_start_matches("ev/")), flat.join(name))?;
    }
    let moved = flat.join(b.manifest.rsplit('/').next().context("name")?);
    let run = run_agent(
        Command::new(agent_bin()?)
            .arg("verify")
            .arg(&moved)
            .arg("--json"),
    )?;
    ensure!(
        run.code == 4 && failed(&run)?.iter().all(|f| f.starts_with("location")),
        "moved copy: {run:?}"
    );
    ensure!(run.stderr.contains("--relocated"), "{}", run.stderr);
    let run = run_agent(
        Command::new(agent_bin()?)
            .arg("verify")
            .arg(&moved)
            .args(["--json", "--relocated"]),
    )?;
    ensure!(run.code == 0, "--relocated: {run:?}");
    ensure!(
        check(&run, "location").is_some_and(|c| c["skipped"] == json!(true)),
        "{}",
        run.stdout
    );

    // Countersigned by the "controller" (openssl): passes with its public key.
    let (private, public) = openssl_key(tmp.path(), "controller")?;
    let (_, other_public) = openssl_key(tmp.path(), "other")?;
    let st = statement(&server, &a.manifest, KEY_ARN)?;
    let signed = countersignature(&st, KEY_ARN, &openssl_sign(tmp.path(), &private, &st)?)?;
    put_bytes(&server, tmp.path(), &signature_key(&a.manifest), &signed)?;
    let public = public.display().to_string();
    let other_public = other_public.display().to_string();
    let run = verify(
        &server,
        &a_uri,
        &["--require-signature", "--public-key", &public],
    )?;
    ensure!(run.code == 0, "signed: {run:?}");
    ensure!(
        run.json["countersignature"]["verified_at"] == json!("2026-12-02T06:00:00Z")
            && run.json["countersignature"]["execution_arn"]
                .as_str()
                .is_some_and(|a| a.ends_with(":e2e")),
        "{}",
        run.stdout
    );
    // Another key: NOT INTACT, even when the signature is not required.
    let run = verify(&server, &a_uri, &["--public-key", &other_public])?;
    ensure!(
        run.code == 4 && failed(&run)? == ["signature"],
        "other key: {run:?}"
    );
    // No key: reported, not checked.
    let run = verify(&server, &a_uri, &[])?;
    ensure!(
        run.code == 0 && check(&run, "signature").is_some_and(|c| c["skipped"] == json!(true)),
        "{run:?}"
    );
    // Required without a key: a usage error that names the options.
    let run = verify(&server, &a_uri, &["--require-signature"])?;
    ensure!(
        run.code == 2 && run.stderr.contains("--public-key"),
        "{run:?}"
    );

    // A rewritten manifest: the signed statement is about another one.
    let original = server.get(&a.manifest)?;
    let mut rewritten: Value = serde_json::from_slice(&original)?;
    rewritten["tool"]["version"] = json!("9.9.9");
    put_bytes(
        &server,
        tmp.path(),
        &a.manifest,
        &serde_json::to_vec(&rewritten)?,
    )?;
    let run = verify(
        &server,
        &a_uri,
        &["--require-signature", "--public-key", &public],
    )?;
    ensure!(
        run.code == 4 && failed(&run)? == ["statement: manifest sha256"],
        "rewritten manifest: {run:?}"
    );
    put_bytes(&server, tmp.path(), &a.manifest, &original)?;

    // The signature removed.
    server.aws(&["s3", "rm", &uri(&server, &signature_key(&a.manifest))])?;
    let run = verify(
        &server,
        &a_uri,
        &["--require-signature", "--public-key", &public],
    )?;
    ensure!(
        run.code == 4 && failed(&run)? == ["signature"] && run.stderr.contains("missing"),
        "missing signature: {run:?}"
    );

    // A consistent single-frame `zstd -19` rewrite: hashes and sizes agree, the format does not.
    let raw = zstd_decompress(&server.get(&a.image)?)?;
    let raw_path = tmp.path().join("raw.img");
    std::fs::write(&raw_path, &raw)?;
    let single = tmp.path().join("single.zst");
    run_ok(
        Command::new("zstd")
            .args(["-19", "-q", "-f"])
            .arg(&raw_path)
            .arg("-o")
            .arg(&single),
    )?;
    let single_bytes = std::fs::read(&single)?;
    let mut m: Value = serde_json::from_slice(&original)?;
    m["compressed"]["sha256"] = json!(sha256(&single_bytes));
    m["compressed"]["size"] = json!(single_bytes.len());
    server.put(&a.image, &single)?;
    put_bytes(&server, tmp.path(), &a.manifest, &serde_json::to_vec(&m)?)?;
    let run = verify(&server, &a_uri, &[])?;
    ensure!(run.code == 4, "single-frame rewrite passed: {run:?}");
    let failures = failed(&run)?;
    ensure!(
        failures.contains(&"seek table".to_owned())
            && !failures
                .iter()
                .any(|f| f.contains("sha256") || (f.ends_with("size") && f != "frame size")),
        "{failures:?}"
    );

    // Another case's image and manifest copied over this case's objects.
    for (from, to) in [(&b.image, &a.image), (&b.manifest, &a.manifest)] {
        let p = tmp.path().join("copy.tmp");
        std::fs::write(&p, server.get(from)?)?;
        server.put(to, &p)?;
    }
    let run = verify(&server, &a_uri, &[])?;
    let failures = failed(&run)?;
    ensure!(
        run.code == 4
            && failures.contains(&"location: image key".to_owned())
            && failures.contains(&"location: case".to_owned())
            && failures.iter().all(|f| f.starts_with("location")),
        "another case's evidence passed: {run:?}"
    );
    Ok(())
}

/// `--public-key-kms` against moto's KMS: GetPublicKey and Sign for ECC_NIST_P256.
#[test]
fn countersignature_by_a_kms_key_in_moto() -> Result<()> {
    let server = S3Server::start(ServerKind::Moto)?;
    let tmp = tempfile::tempdir()?;
    let a = acquire(&server, &tmp.path().join("a"), "IR-K", 3)?;
    let create = |spec: &str| -> Result<String> {
        let out = server.aws(&[
            "kms",
            "create-key",
            "--key-spec",
            spec,
            "--key-usage",
            "SIGN_VERIFY",
            "--output",
            "json",
        ])?;
        let v: Value = serde_json::from_slice(&out.stdout)?;
        v["KeyMetadata"]["Arn"]
            .as_str()
            .map(str::to_owned)
            .context("create-key returned no ARN")
    };
    let key = create("ECC_NIST_P256")?;
    let other = create("ECC_NIST_P256")?;
    let rsa = create("RSA_2048")?;

    let st = statement(&server, &a.manifest, &key)?;
    let msg = tmp.path().join("statement.json");
    std::fs::write(&msg, &st)?;
    let out = server.aws(&[
        "kms",
        "sign",
        "--key-id",
        &key,
        "--message",
        &format!("fileb://{}", msg.display()),
        "--message-type",
        "RAW",
        "--signing-algorithm",
        "ECDSA_SHA_256",
        "--output",
        "json",
    ])?;
    let sig: Value = serde_json::from_slice(&out.stdout)?;
    let b64 = sig["Signature"].as_str().context("no signature")?;
    put_bytes(
        &server,
        tmp.path(),
        &signature_key(&a.manifest),
        &countersignature(&st, &key, b64)?,
    )?;
    let a_uri = uri(&server, &a.manifest);

    let run = verify(
        &server,
        &a_uri,
        &["--require-signature", "--public-key-kms", &key],
    )?;
    ensure!(run.code == 0, "KMS-signed: {run:?}");
    ensure!(
        run.json["countersignature"]["key_id"] == json!(key),
        "{}",
        run.stdout
    );
    let run = verify(
        &server,
        &a_uri,
        &["--require-signature", "--public-key-kms", &other],
    )?;
    ensure!(
        run.code == 4 && failed(&run)? == ["signature"],
        "other KMS key: {run:?}"
    );
    let run = verify(
        &server,
        &a_uri,
        &["--require-signature", "--public-key-kms", &rsa],
    )?;
    ensure!(
        run.code == 2 && run.stderr.contains("ECC_NIST_P256") && run.stderr.contains("RSA_2048"),
        "RSA key: {run:?}"
    );
    Ok(())
}
