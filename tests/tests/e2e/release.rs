//! The release end to end: `packaging/release.sh` builds the static agent into `dist/`, and
//! `packaging/publish.sh` puts it and LiME modules into an artifact bucket (a real Garage) in
//! the layout the SSM documents fetch, refusing to replace a version's bytes.
//!
//! release.sh runs every time; cargo rebuilds only what changed, so this takes seconds when the
//! `dist` build is current and about 10 minutes on 2 cores when it is not (thin LTO, one codegen
//! unit). That the binary runs without any libc is proven by the VM tests (tests/vm,
//! memory_vm.rs), which run it in a busybox guest; this test does not repeat it.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Instant;

use airf_e2e::{S3Server, ServerKind, repo_root, run_ok, sha256_file};
use anyhow::{Context, Result, ensure};

/// Runs `cmd`, returning its output whatever its status.
fn output(cmd: &mut Command) -> Result<Output> {
    cmd.output().with_context(|| format!("running {cmd:?}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A release directory like dist/: the binary, its sha256sum line and VERSION.
fn write_release(dir: &Path, binary: &[u8], version: &str) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let bin = dir.join("airf-agent");
    std::fs::write(&bin, binary)?;
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755))?;
    std::fs::write(
        dir.join("airf-agent.sha256"),
        format!("{}  airf-agent\n", sha256_file(&bin)?),
    )?;
    std::fs::write(dir.join("VERSION"), format!("{version}\n"))?;
    Ok(())
}

#[test]
fn release_is_static_and_publish_is_immutable_per_version() -> Result<()> {
    let root = repo_root();
    let dist = root.join("dist");

    // --- release.sh ---
    let started = Instant::now();
    let out = run_ok(&mut Command::new(root.join("packaging/release.sh")))?;
    eprintln!("release.sh took {:.0?}", started.elapsed());
    let printed = text(&out.stdout);
    for name in ["airf-agent", "airf-agent.sha256", "VERSION"] {
        let path = dist.join(name);
        ensure!(
            printed.lines().any(|l| Path::new(l) == path),
            "release.sh did not print {}:\n{printed}",
            path.display()
        );
    }
    let bin = dist.join("airf-agent");

    // Static: no loader, no shared libraries. Rust's musl target links a static PIE, which
    // file(1) calls "static-pie linked"; a non-PIE static binary is "statically linked".
    let file = text(&run_ok(Command::new("file").arg("-b").arg(&bin))?.stdout);
    ensure!(
        file.contains("statically linked") || file.contains("static-pie linked"),
        "dist/airf-agent is not static: {file}"
    );
    ensure!(!file.contains("dynamically linked"), "{file}");
    let headers = text(&run_ok(Command::new("readelf").args(["-l", "-d"]).arg(&bin))?.stdout);
    ensure!(
        !headers.contains("program interpreter") && !headers.contains("(NEEDED)"),
        "dist/airf-agent needs a dynamic loader or libraries:\n{headers}"
    );

    // The checksum file is sha256sum's format and matches; --version prints VERSION.
    let sum_line = std::fs::read_to_string(dist.join("airf-agent.sha256"))?;
    let expected = format!("{}  airf-agent\n", sha256_file(&bin)?);
    ensure!(
        sum_line == expected,
        "airf-agent.sha256 is {sum_line:?}, expected {expected:?}"
    );
    run_ok(
        Command::new("sha256sum")
            .args(["--quiet", "-c", "airf-agent.sha256"])
            .current_dir(&dist),
    )?;
    let version = std::fs::read_to_string(dist.join("VERSION"))?
        .trim()
        .to_owned();
    ensure!(
        version == env!("CARGO_PKG_VERSION"),
        "VERSION {version} is not the workspace version {}",
        env!("CARGO_PKG_VERSION")
    );
    let printed_version = text(&run_ok(Command::new(&bin).arg("--version"))?.stdout);
    ensure!(
        printed_version.trim() == format!("airf-agent {version}"),
        "--version printed {printed_version:?}, VERSION is {version}"
    );

    // --- publish.sh into a real Garage ---
    let server = S3Server::start(ServerKind::Garage)?;
    let endpoint = server.endpoint()?;
    let tmp = tempfile::tempdir()?;
    let lime_dir = tmp.path().join("lime");
    std::fs::create_dir(&lime_dir)?;
    let kernel = "6.1.0-99-amd64";
    let module = b"\x7fELF not a real module, publish.sh only carries it".to_vec();
    std::fs::write(lime_dir.join(format!("lime-{kernel}.ko")), &module)?;
    std::fs::write(lime_dir.join("unrelated.ko"), b"not lime-*.ko")?;

    let publish = |dist_dir: &Path| {
        let mut cmd = server.command(root.join("packaging/publish.sh"));
        cmd.arg(&server.bucket)
            .args(["--endpoint-url", &endpoint, "--lime-dir"])
            .arg(&lime_dir)
            .arg("--dist")
            .arg(dist_dir);
        output(&mut cmd)
    };

    let out = publish(&dist)?;
    ensure!(
        out.status.success(),
        "publish.sh failed:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let mut keys = server.keys("")?;
    keys.sort();
    let mut expected_keys = vec![
        format!("agent/{version}/airf-agent"),
        format!("agent/{version}/airf-agent.sha256"),
        format!("lime/{kernel}/lime.ko"),
        format!("lime/{kernel}/lime.ko.sha256"),
    ];
    expected_keys.sort();
    ensure!(
        keys == expected_keys,
        "bucket holds {keys:?}, expected {expected_keys:?}"
    );
    let binary = std::fs::read(&bin)?;
    ensure!(
        server.get(&format!("agent/{version}/airf-agent"))? == binary,
        "the published agent differs from dist/airf-agent"
    );
    ensure!(text(&server.get(&format!("agent/{version}/airf-agent.sha256"))?) == sum_line);
    ensure!(server.get(&format!("lime/{kernel}/lime.ko"))? == module);
    ensure!(
        text(&server.get(&format!("lime/{kernel}/lime.ko.sha256"))?)
            == format!("{}  lime.ko\n", airf_e2e::sha256(&module))
    );

    // The same release again changes nothing and succeeds.
    let out = publish(&dist)?;
    ensure!(
        out.status.success(),
        "re-publishing the same release failed:\n{}",
        text(&out.stderr)
    );

    // A different binary under the same version is refused, and nothing at all is uploaded
    // (not even a module for a new kernel that came with it).
    let other = tmp.path().join("other-dist");
    let mut changed = binary.clone();
    changed.extend_from_slice(b"trailing bytes: same version, different binary");
    write_release(&other, &changed, &version)?;
    std::fs::write(lime_dir.join("lime-6.1.0-100-amd64.ko"), b"another module")?;
    let out = publish(&other)?;
    let stderr = text(&out.stderr);
    ensure!(
        !out.status.success(),
        "publishing a different binary as {version} succeeded:\n{stderr}"
    );
    ensure!(
        stderr.contains("already exists with different content"),
        "unexpected refusal message:\n{stderr}"
    );
    let mut keys = server.keys("")?;
    keys.sort();
    ensure!(
        keys == expected_keys,
        "a refused publish changed the bucket: {keys:?}"
    );
    ensure!(
        server.get(&format!("agent/{version}/airf-agent"))? == binary,
        "a refused publish replaced the agent"
    );
    Ok(())
}
