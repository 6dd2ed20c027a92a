//! `airf-agent memory` (and `disk` with injected media errors) in a real Linux kernel under
//! QEMU: the static agent runs in a busybox guest and uploads into Garage on the host through a
//! guest→host port forward; the host then reads what was stored as an analyst would (zstd,
//! Volatility 3) and proves it with `airf-agent verify`.
//!
//! These tests boot VMs, so they are `#[ignore]`d in a plain `cargo test`;
//! `tests/vm/run-tests.sh` prepares everything and runs them with `--ignored`, where a missing
//! prerequisite is a failure, never a skip. Environment (set by run-tests.sh):
//! `AIRF_STATIC_AGENT` (the musl build for the guest), `AIRF_AGENT_BIN` (host build for verify),
//! `AIRF_LIME_KO` (lime.ko for the guest kernel).

#![expect(
    clippy::indexing_slicing,
    reason = "serde_json::Value indexing yields Null, it never panics"
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use airf_agent::memory::iomem::{RamRange, lime_image_size, parse_system_ram};
use airf_agent::memory::lime_format::{HEADER_SIZE, LimeHeader};
use airf_e2e::slow_link::{SlowLink, Slowness};
use airf_e2e::vm::{GuestRun, Series, VmKernel, env_path, guest, guest_on, guest_via};
use airf_e2e::volatility::{self, marker};
use airf_e2e::{S3Server, ServerKind, agent_bin, run_agent, sha256, zstd_decompress};
use anyhow::{Context, Result, bail, ensure};

/// The guest's /proc/iomem, printed between markers on stderr.
fn guest_ram(stderr: &str) -> Result<Vec<RamRange>> {
    let text: String = stderr
        .split("==IOMEM==\n")
        .nth(1)
        .and_then(|s| s.split("==END==").next())
        .context("guest printed no /proc/iomem")?
        .to_owned();
    Ok(parse_system_ram(&text)?)
}

/// Key of an `s3://bucket/key` location.
fn key_of(location: &str, bucket: &str) -> Result<String> {
    location
        .strip_prefix(&format!("s3://{bucket}/"))
        .map(str::to_owned)
        .with_context(|| format!("{location} is not in bucket {bucket}"))
}

/// Checks a decompressed LiME image range by range against the guest's RAM map.
fn check_lime_layout(raw: &[u8], ram: &[RamRange]) -> Result<()> {
    ensure!(
        raw.len() as u64 == lime_image_size(ram),
        "image is {} bytes, the guest's System RAM + headers is {}",
        raw.len(),
        lime_image_size(ram)
    );
    let mut at = 0usize;
    for r in ram {
        let h = LimeHeader::read(raw.get(at..).unwrap_or_default())
            .with_context(|| format!("LiME header at {at}"))?;
        ensure!(
            (h.start, h.end) == (r.start, r.end),
            "header {h:?} at {at} is not {r:?}"
        );
        at += HEADER_SIZE + usize::try_from(r.size())?;
    }
    Ok(())
}

/// Per range of `ram`, (pages, all-zero pages) of a decompressed LiME image, counted here
/// independently of the agent: 4 KiB pages aligned on physical addresses, a partial page at an
/// edge counting as one.
fn zero_pages(raw: &[u8], ram: &[RamRange]) -> Result<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    let mut at = 0usize;
    for r in ram {
        at += HEADER_SIZE;
        let data = raw
            .get(at..at + usize::try_from(r.size())?)
            .context("image shorter than its ranges")?;
        let (mut pages, mut zero) = (0u64, 0u64);
        let mut addr = r.start;
        while addr <= r.end {
            let next = ((addr / 4096 + 1) * 4096).min(r.end + 1);
            let off = usize::try_from(addr - r.start)?;
            let page = data
                .get(off..off + usize::try_from(next - addr)?)
                .context("page")?;
            pages += 1;
            zero += u64::from(page.iter().all(|&b| b == 0));
            addr = next;
        }
        out.push((pages, zero));
        at += data.len();
    }
    Ok(out)
}

/// The manifest's content facts agree with the image, and the kernel's own banner is in it.
fn check_content(manifest: &serde_json::Value, raw: &[u8], ram: &[RamRange]) -> Result<()> {
    let content = &manifest["source"]["content"];
    let counted = zero_pages(raw, ram)?;
    let recorded: Vec<(u64, u64)> = content["ranges"]
        .as_array()
        .context("manifest has no content ranges")?
        .iter()
        .map(|r| {
            (
                r["pages"].as_u64().unwrap_or(u64::MAX),
                r["zero_pages"].as_u64().unwrap_or(u64::MAX),
            )
        })
        .collect();
    ensure!(
        recorded == counted,
        "manifest pages/zero pages {recorded:?}, counted in the image {counted:?}"
    );
    ensure!(
        content["kernel_rodata"]["start"].as_u64().is_some()
            && content["banner_in_kernel_rodata"].as_u64().unwrap_or(0) >= 1,
        "the kernel's own banner is not recorded in Kernel rodata: {content:#}"
    );
    ensure!(
        content["ranges"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|r| r["zero_tail_suspect"].is_null()),
        "a whole capture has a range flagged as zero-filled: {content:#}"
    );
    Ok(())
}

/// Volatility 3's banners plugin over the image: the guest's banner must be among them.
fn volatility_finds_banner(image: &Path, banner: &str) -> Result<()> {
    let out = Command::new("vol")
        .args(["-q", "-r", "csv", "-f"])
        .arg(image)
        .arg("banners.Banners")
        .output()
        .context("vol (pip install volatility3)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "vol failed: {}{}",
        text,
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        text.lines()
            .any(|l| l.trim_end().ends_with(banner.trim_end()) || l.contains(banner.trim_end())),
        "Volatility found no banner equal to {banner:?}; it found:\n{text}"
    );
    Ok(())
}

/// Downloads, decompresses and checks one memory capture; returns the manifest and the
/// decompressed image, kept in `work`.
fn check_capture(
    server: &S3Server,
    run: &GuestRun,
    want_source: &str,
    work: &Path,
) -> Result<Capture> {
    let json: serde_json::Value = serde_json::from_str(&run.stdout)
        .with_context(|| format!("agent JSON: {}\n{}", run.stdout, run.stderr))?;
    ensure!(
        run.code == 0,
        "agent exited {}: {}\n{}",
        run.code,
        run.stdout,
        run.stderr
    );
    let src = &json["sources"][0];
    ensure!(src["status"] == "complete", "{json:#}");
    let banner = marker(&run.stderr, "BANNER")?;
    let ram = guest_ram(&run.stderr)?;

    let manifest_key = key_of(
        src["manifest"]["location"].as_str().context("manifest")?,
        &server.bucket,
    )?;
    let manifest: serde_json::Value = serde_json::from_slice(&server.get(&manifest_key)?)?;
    let facts = &manifest["source"];
    ensure!(
        facts["type"] == "memory" && facts["source_used"] == want_source,
        "{facts:#}"
    );
    ensure!(
        facts["banner"] == banner.as_str(),
        "manifest banner {} != guest {banner:?}",
        facts["banner"]
    );
    ensure!(
        manifest["kind"] == "memory"
            && manifest["agent"]["peak_rss_bytes"].as_u64().unwrap_or(0) > 0
    );
    let names: Vec<&str> = facts["artifacts"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x["name"].as_str()).collect())
        .unwrap_or_default();
    // BTF is checked where a symbol table is built (`symbols_open_the_image`): one test hides it.
    for want in [
        "memory.kallsyms.txt",
        "memory.proc-version.txt",
        "memory.proc-cmdline.txt",
        "memory.proc-modules.txt",
    ] {
        ensure!(names.contains(&want), "artifact {want} missing: {names:?}");
    }
    for a in facts["artifacts"].as_array().into_iter().flatten() {
        let key = key_of(
            a["location"].as_str().context("artifact location")?,
            &server.bucket,
        )?;
        let bytes = server.get(&key)?;
        ensure!(
            sha256(&bytes) == a["sha256"].as_str().unwrap_or(""),
            "artifact {key} hash differs"
        );
    }

    let image_key = key_of(
        src["image"]["location"].as_str().context("image")?,
        &server.bucket,
    )?;
    let raw = zstd_decompress(&server.get(&image_key)?)?;
    check_lime_layout(&raw, &ram)?;
    ensure!(sha256(&raw) == manifest["raw"]["sha256"].as_str().unwrap_or(""));
    check_content(&manifest, &raw, &ram)?;
    let image = work.join(format!("{want_source}.lime"));
    std::fs::write(&image, &raw)?;
    drop(raw);
    volatility_finds_banner(&image, &banner)?;

    let verify = run_agent(server.command(agent_bin()?).args([
        "verify",
        &format!("s3://{}/{manifest_key}", server.bucket),
        "--json",
    ]))?;
    ensure!(verify.code == 0, "verify failed: {verify:?}");
    Ok(Capture {
        manifest,
        manifest_key,
        image,
    })
}

/// A capture without BTF, VMCOREINFO or kallsyms addresses says so in its manifest and its
/// result, and `airf-agent symbols` refuses it naming the missing input.
fn no_symbol_table_and_why(server: &S3Server, c: &Capture, run: &GuestRun) -> Result<()> {
    let inputs = &c.manifest["source"]["symbol_inputs"];
    let problems = inputs["problems"].to_string();
    ensure!(
        inputs["complete"] == false
            && inputs["kallsyms_zeroed"] == true
            && inputs["kptr_restrict"] == 2
            && inputs["sysctl_changes"].is_null()
            && problems.contains("this kernel has no BTF")
            && problems.contains("kptr_restrict=2")
            && problems.contains("VMCOREINFO was not stored"),
        "{inputs:#}"
    );
    let result: serde_json::Value = serde_json::from_str(&run.stdout)?;
    let warnings = result["sources"][0]["warnings"].to_string();
    ensure!(
        warnings.contains("no symbol table: this kernel has no BTF"),
        "the result must say it too: {warnings}"
    );
    let made = run_agent(server.command(agent_bin()?).args([
        "symbols",
        &format!("s3://{}/{}", server.bucket, c.manifest_key),
        "--json",
    ]))?;
    ensure!(
        made.code == 1
            && made.stderr.contains("memory.btf-vmlinux is not in")
            && made.stderr.contains("/sys/kernel/btf/vmlinux"),
        "symbols must refuse naming the input: {made:?}"
    );
    let table = c
        .manifest_key
        .replace("memory.manifest.json", "memory.isf.json.xz");
    ensure!(server.get(&table).is_err(), "a table was stored: {table}");
    Ok(())
}

/// One checked capture.
struct Capture {
    manifest: serde_json::Value,
    manifest_key: String,
    /// The decompressed LiME image.
    image: PathBuf,
}

/// `airf-agent symbols` builds the table from what the capture stored, the table validates
/// against Volatility's schema, and Volatility 3 with it lists the guest's processes, modules
/// and listening socket. Returns the linux.pslist lines.
fn symbols_open_the_image(
    server: &S3Server,
    capture: &Capture,
    run: &GuestRun,
    work: &Path,
) -> Result<Vec<String>> {
    let inputs = &capture.manifest["source"]["symbol_inputs"];
    ensure!(
        inputs["complete"] == true,
        "symbol inputs incomplete: {inputs:#}"
    );
    let started = std::time::Instant::now();
    let made = run_agent(server.command(agent_bin()?).args([
        "symbols",
        &format!("s3://{}/{}", server.bucket, capture.manifest_key),
        "--json",
    ]))?;
    ensure!(made.code == 0, "symbols failed: {made:?}");
    let result: serde_json::Value = serde_json::from_str(&made.stdout)?;
    let table_key = key_of(result["table"].as_str().context("table")?, &server.bucket)?;
    ensure!(
        table_key
            == capture
                .manifest_key
                .replace("memory.manifest.json", "memory.isf.json.xz"),
        "the table is not beside the image: {table_key}"
    );
    let symbols = work.join(format!(
        "symbols-{}",
        capture.manifest_key.replace('/', "_")
    ));
    std::fs::create_dir_all(&symbols)?;
    let table = symbols.join("memory.isf.json.xz");
    let xz = server.get(&table_key)?;
    std::fs::write(&table, &xz)?;
    eprintln!(
        "symbol table: {} bytes, built in {:.1} s ({}), {}",
        xz.len(),
        started.elapsed().as_secs_f64(),
        result["summary"],
        capture.manifest_key
    );
    volatility::validate_isf(&table)?;
    let guest = volatility::GuestState::parse(&run.stderr)?;
    let cache = work.join("vol-cache");
    let report = volatility::check_plugins(&[], &symbols, &capture.image, &guest, &cache)?;
    eprintln!(
        "Volatility 3: {} processes, {} modules, {} sockets; linux.pslist:\n{}",
        report.processes,
        report.modules,
        report.sockets,
        report.pslist.join("\n")
    );
    Ok(report.pslist)
}

const PRELUDE: &str = r#"echo "BANNER=$(cat /proc/version)" >&2; { echo ==IOMEM==; cat /proc/iomem; echo ==END==; } >&2;"#;

fn memory_cmd(source: &str, extra: &str) -> String {
    format!(
        r#"{PRELUDE} {} airf-agent memory --source {source} {extra} --to "s3://$AIRF_TEST_BUCKET/vm/" --case VM-{source} --no-progress --json"#,
        volatility::CANARY_PRELUDE
    )
}

fn lime_args() -> Result<String> {
    let lime = env_path("AIRF_LIME_KO")?;
    let sha = sha256(&std::fs::read(lime)?);
    Ok(format!("--lime-module /root/lime.ko --lime-sha256 {sha}"))
}

#[test]
#[ignore = "boots a VM; run by tests/vm/run-tests.sh"]
fn kcore_capture_opens_in_volatility() -> Result<()> {
    let server = S3Server::start(ServerKind::Garage)?;
    let work = tempfile::tempdir()?;
    let run = guest(Some(&server), &[], &memory_cmd("kcore", ""))?;
    let c = check_capture(&server, &run, "kcore", work.path())?;
    let names = c.manifest["source"]["artifacts"].to_string();
    ensure!(
        names.contains("memory.vmcoreinfo.txt") && names.contains("memory.kallsyms.txt"),
        "no VMCOREINFO or kallsyms: {names}"
    );
    symbols_open_the_image(&server, &c, &run, work.path()).map(|_| ())
}

#[test]
#[ignore = "boots a VM; run by tests/vm/run-tests.sh"]
fn kcore_capture_with_kaslr() -> Result<()> {
    let server = S3Server::start(ServerKind::Garage)?;
    let work = tempfile::tempdir()?;
    let run = guest(Some(&server), &["--kaslr"], &memory_cmd("kcore", ""))?;
    let c = check_capture(&server, &run, "kcore", work.path())?;
    symbols_open_the_image(&server, &c, &run, work.path()).map(|_| ())
}

/// An upload path that holds everything back for 5 s and then runs at 4 MB/s: far slower than
/// LiME's default 1 s page timeout tolerates (with it, LiME zero-filled 99.6% of RAM here).
fn slow_link(server: &S3Server) -> Result<SlowLink> {
    SlowLink::start(
        server.port()?,
        Slowness {
            hold: std::time::Duration::from_secs(5),
            bytes_per_sec: 4_000_000,
        },
    )
}

/// LiME through a deliberately slow upload path still yields the whole of memory: the banner
/// where the kernel keeps it, Volatility's banners, zero pages as counted here.
#[test]
#[ignore = "boots a VM; run by tests/vm/run-tests.sh"]
fn lime_capture_opens_in_volatility() -> Result<()> {
    let server = S3Server::start(ServerKind::Garage)?;
    let link = slow_link(&server)?;
    let work = tempfile::tempdir()?;
    let cmd = format!(
        "{}; echo \"LOADED=$(grep -c '^lime ' /proc/modules)\" >&2",
        memory_cmd("lime", &lime_args()?)
    );
    let run = guest_via(Some(&server), Some(link.port), &[], &cmd)?;
    let c = check_capture(&server, &run, "lime", work.path())?;
    symbols_open_the_image(&server, &c, &run, work.path())?;
    let m = &c.manifest;
    ensure!(
        m["source"]["lime_module"]["parameters"]
            .as_str()
            .is_some_and(|p| p.ends_with(" format=lime timeout=0")),
        "LiME's parameters are not recorded with timeout=0: {:#}",
        m["source"]["lime_module"]
    );
    ensure!(
        marker(&run.stderr, "LOADED")? == "0",
        "lime still loaded after the capture"
    );
    ensure!(
        m["source"]["lime_module"]["vermagic"]
            .as_str()
            .unwrap_or("")
            .starts_with("6.1.0-")
    );
    Ok(())
}

/// The failure on purpose: LiME with a 1 ms page timeout behind a stalled upload zero-fills
/// the rest of a range. The agent must store that image as hollow (exit 5), never complete,
/// and say why; `verify` still proves the stored bytes but says what they are.
#[test]
#[ignore = "boots a VM; run by tests/vm/run-tests.sh"]
fn lime_that_skips_under_backpressure_is_reported_hollow() -> Result<()> {
    let server = S3Server::start(ServerKind::Garage)?;
    let link = slow_link(&server)?;
    let cmd = memory_cmd(
        "lime",
        &format!("{} --lime-page-timeout-ms 1", lime_args()?),
    );
    let run = guest_via(Some(&server), Some(link.port), &[], &cmd)?;
    let json: serde_json::Value = serde_json::from_str(&run.stdout)
        .with_context(|| format!("agent JSON: {}\n{}", run.stdout, run.stderr))?;
    let src = &json["sources"][0];
    ensure!(
        run.code == 5 && json["status"] == "hollow" && src["status"] == "hollow",
        "a zero-filled capture must end hollow with exit 5 (got {}): {json:#}\n{}",
        run.code,
        run.stderr
    );
    ensure!(
        src["error"]
            .as_str()
            .is_some_and(|e| e.contains("banner is not in the image")),
        "{src:#}"
    );
    ensure!(
        run.stderr.contains("HOLLOW: "),
        "no plain-words line: {}",
        run.stderr
    );
    let manifest_key = key_of(
        src["manifest"]["location"].as_str().context("manifest")?,
        &server.bucket,
    )?;
    let manifest: serde_json::Value = serde_json::from_slice(&server.get(&manifest_key)?)?;
    let content = &manifest["source"]["content"];
    ensure!(
        manifest["status"] == "hollow" && content["banner_in_kernel_rodata"] == 0,
        "{manifest:#}"
    );
    ensure!(
        content["ranges"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| r["zero_tail_suspect"] == true),
        "no range flagged as zero-filled: {content:#}"
    );
    ensure!(
        manifest["source"]["lime_module"]["parameters"]
            .as_str()
            .is_some_and(|p| p.ends_with(" timeout=1")),
        "{:#}",
        manifest["source"]["lime_module"]
    );
    let verify = run_agent(server.command(agent_bin()?).args([
        "verify",
        &format!("s3://{}/{manifest_key}", server.bucket),
        "--json",
    ]))?;
    ensure!(
        verify.code == 0 && verify.stdout.contains("HOLLOW"),
        "verify must prove the stored bytes and say they are hollow: {verify:?}"
    );
    Ok(())
}

#[test]
#[ignore = "boots a VM; run by tests/vm/run-tests.sh"]
fn auto_falls_back_to_lime_when_kcore_is_hidden() -> Result<()> {
    let server = S3Server::start(ServerKind::Garage)?;
    let work = tempfile::tempdir()?;
    // BTF hidden and kallsyms restricted too, with sysctl changes refused: the capture is
    // whole, and says plainly why no symbol table can be built from it.
    let cmd = format!(
        "mount --bind /dev/null /proc/kcore && mount -t tmpfs none /sys/kernel/btf && echo 2 > /proc/sys/kernel/kptr_restrict && {} --no-sysctl-changes",
        memory_cmd("auto", &lime_args()?)
    );
    let run = guest(Some(&server), &[], &cmd)?;
    let c = check_capture(&server, &run, "lime", work.path())?;
    no_symbol_table_and_why(&server, &c, &run)?;
    let m = c.manifest;
    let skipped = &m["source"]["sources_skipped"];
    ensure!(
        skipped[0]["source"] == "kcore"
            && skipped[0]["cause"].as_str().is_some_and(|c| !c.is_empty()),
        "{skipped:#}"
    );
    ensure!(
        run.stderr.contains("airf-agent: not using kcore: ")
            && run.stderr.contains("; using lime instead"),
        "the fallback must be said in words: {}",
        run.stderr
    );
    Ok(())
}

#[test]
#[ignore = "boots a VM; run by tests/vm/run-tests.sh"]
fn module_for_another_kernel_is_refused_before_loading() -> Result<()> {
    let lime = std::fs::read(env_path("AIRF_LIME_KO")?)?;
    let release = std::fs::read_to_string("/opt/airf-cache/vm/kernel-release")
        .unwrap_or_else(|_| "6.1.0-57-amd64".into());
    let release = release.trim();
    // Same length, so the ELF layout is unchanged: only the vermagic names another kernel.
    let other = release.replacen("6.1.0-", "6.1.9-", 1);
    ensure!(other.len() == release.len() && other != release);
    let patched = replace_all(&lime, release.as_bytes(), other.as_bytes());
    ensure!(patched != lime, "vermagic {release} not found in lime.ko");
    let work = tempfile::tempdir()?;
    let fake = work.path().join("lime-other.ko");
    std::fs::write(&fake, &patched)?;
    let sha = sha256(&patched);
    let cmd = format!(
        "mount --bind /dev/null /proc/kcore; airf-agent memory --source auto --lime-module /root/other.ko --lime-sha256 {sha} --to /tmp/out --json; rc=$?; echo \"LOADED=$(grep -c '^lime ' /proc/modules)\" >&2; exit $rc"
    );
    let run = guest(
        None,
        &["--file", &format!("{}:/root/other.ko", fake.display())],
        &cmd,
    )?;
    ensure!(
        run.code == 1,
        "want exit 1, got {}: {}\n{}",
        run.code,
        run.stdout,
        run.stderr
    );
    ensure!(
        run.stderr.contains(&other)
            && run.stderr.contains(release)
            && run.stderr.contains("kcore:"),
        "the error must name both kernels and every source: {}",
        run.stderr
    );
    ensure!(marker(&run.stderr, "LOADED")? == "0");
    // A wrong hash is refused too.
    let cmd = format!(
        "airf-agent memory --source lime --lime-module /root/lime.ko --lime-sha256 {} --to /tmp/out --json",
        "0".repeat(64)
    );
    let run = guest(None, &[], &cmd)?;
    ensure!(
        run.code == 1 && run.stderr.contains("SHA-256"),
        "{}",
        run.stderr
    );
    Ok(())
}

#[test]
#[ignore = "boots a VM; run by tests/vm/run-tests.sh"]
fn kernel_lockdown_is_named_and_integrity_still_allows_kcore() -> Result<()> {
    const SECURITYFS: &str = "mount -t securityfs securityfs /sys/kernel/security; \
        echo \"LOCKDOWN=$(cat /sys/kernel/security/lockdown)\" >&2";
    let lime = lime_args()?;

    // Confidentiality: kcore and LiME both refused; the error says why, once, in words.
    let cmd = format!("{SECURITYFS}; airf-agent memory --source auto {lime} --to /tmp/out --json");
    let run = guest(None, &["--append", "lockdown=confidentiality"], &cmd)?;
    ensure!(
        marker(&run.stderr, "LOCKDOWN")?.contains("[confidentiality]"),
        "the guest kernel did not enter lockdown: {}",
        run.stderr
    );
    ensure!(
        run.code == 1
            && run.stderr.contains("kcore:")
            && run.stderr.contains("lime:")
            && run.stderr.contains("kernel lockdown is 'confidentiality'"),
        "exit {}: {}",
        run.code,
        run.stderr
    );

    // Integrity: unsigned LiME refused; kcore captures whole and the manifest records the mode.
    let server = S3Server::start(ServerKind::Garage)?;
    let work = tempfile::tempdir()?;
    let cmd = format!(
        "{SECURITYFS}; airf-agent memory --source lime {lime} --to /tmp/out --json >/dev/null; \
         echo \"LIME_RC=$?\" >&2; {}",
        memory_cmd("kcore", "")
    );
    let run = guest(Some(&server), &["--append", "lockdown=integrity"], &cmd)?;
    ensure!(
        marker(&run.stderr, "LIME_RC")? == "1"
            && run.stderr.contains("kernel lockdown is 'integrity'"),
        "LiME must be refused under integrity: {}",
        run.stderr
    );
    let m = check_capture(&server, &run, "kcore", work.path())?.manifest;
    ensure!(m["source"]["lockdown"] == "integrity", "{:#}", m["source"]);
    Ok(())
}

fn replace_all(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = hay.to_vec();
    let mut i = 0;
    while i + from.len() <= out.len() {
        if out.get(i..i + from.len()) == Some(from) {
            if let Some(dst) = out.get_mut(i..i + to.len()) {
                dst.copy_from_slice(to);
            }
            i += from.len();
        } else {
            i += 1;
        }
    }
    out
}

#[test]
#[ignore = "boots a VM; run by tests/vm/run-tests.sh"]
fn disk_with_eio_sectors_lists_exactly_them() -> Result<()> {
    let work = tempfile::tempdir()?;
    let img = work.path().join("disk.img");
    let mut data = vec![0u8; 16 << 20];
    for (i, chunk) in data.chunks_mut(512).enumerate() {
        chunk.fill((i % 251) as u8 + 1);
    }
    std::fs::write(&img, &data)?;
    let bad: [(u64, u64); 2] = [(2048, 4), (20001, 1)];
    let disk = format!(
        "{},ro,blkdebug-eio={}:{},blkdebug-eio={}:{}",
        img.display(),
        bad[0].0,
        bad[0].1,
        bad[1].0,
        bad[1].1
    );
    let out = work.path().join("out");
    std::fs::create_dir(&out)?;
    let run = guest(
        None,
        &["--disk", &disk],
        "mkdir -p /tmp/ev && airf-agent disk /dev/vda --to /tmp/ev --json --no-progress; rc=$?; cd /tmp/ev && tar cf - . | od -An -v -tx1 >&2; exit $rc",
    )?;
    ensure!(
        run.code == 3,
        "want exit 3, got {}: {}\n{}",
        run.code,
        run.stdout,
        &run.stderr.get(..2000.min(run.stderr.len())).unwrap_or("")
    );
    let json: serde_json::Value = serde_json::from_str(&run.stdout)?;
    let manifest = &json["sources"][0];
    let _ = manifest;
    bail_if_ranges_differ(&run, &bad, &data, &out)
}

fn bail_if_ranges_differ(
    run: &GuestRun,
    bad: &[(u64, u64)],
    data: &[u8],
    out: &Path,
) -> Result<()> {
    // The evidence folder comes back as a tar in hex on stderr.
    let hex: String = run
        .stderr
        .split_whitespace()
        .filter(|w| w.len() == 2 && w.chars().all(|c| c.is_ascii_hexdigit()))
        .collect();
    let tar = hex::decode(hex)?;
    let tar_path = out.join("ev.tar");
    std::fs::write(&tar_path, tar)?;
    let st = Command::new("tar")
        .arg("xf")
        .arg(&tar_path)
        .arg("-C")
        .arg(out)
        .status()?;
    ensure!(st.success(), "tar failed");
    let manifest_path = find(out, ".manifest.json")?;
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest_path)?)?;
    let got: Vec<(u64, u64)> = manifest["unreadable"]["ranges"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| {
                    (
                        r["offset"].as_u64().unwrap_or(0),
                        r["length"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let want: Vec<(u64, u64)> = bad.iter().map(|&(s, c)| (s * 512, c * 512)).collect();
    ensure!(
        got == want,
        "unreadable ranges {got:?}, want exactly {want:?}"
    );
    let image = find(out, ".raw.zst")?;
    let raw = zstd_decompress(&std::fs::read(image)?)?;
    ensure!(raw.len() == data.len());
    for (i, (a, b)) in raw.chunks(512).zip(data.chunks(512)).enumerate() {
        let sector = i as u64;
        let in_bad = bad.iter().any(|&(s, c)| sector >= s && sector < s + c);
        if in_bad {
            ensure!(
                a.iter().all(|&x| x == 0),
                "bad sector {sector} not zero-filled"
            );
        } else if a != b {
            bail!("sector {sector} differs from the backing file");
        }
    }
    let verify = run_agent(
        Command::new(agent_bin()?)
            .arg("verify")
            .arg(&manifest_path)
            .arg("--json"),
    )?;
    ensure!(verify.code == 0, "verify: {verify:?}");
    Ok(())
}

fn find(dir: &Path, suffix: &str) -> Result<PathBuf> {
    for e in walk(dir)? {
        if e.to_string_lossy().ends_with(suffix) {
            return Ok(e);
        }
    }
    bail!("no *{suffix} under {}", dir.display())
}

fn walk(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            out.extend(walk(&p)?);
        } else {
            out.push(p);
        }
    }
    Ok(out)
}

/// The newer kernel series, with its own BTF and LiME build: kcore with KASLR, LiME with KASLR,
/// and kcore without KASLR each open in Volatility 3 with the table built from their artifacts.
/// The last boot also sets kernel.kptr_restrict=2: the agent lifts it to 1 for the one kallsyms
/// read, puts it back (the guest reads 2 afterwards) and records the change.
#[test]
#[ignore = "boots a VM; run by tests/vm/run-tests.sh"]
fn kernel_6_12_captures_open_in_volatility() -> Result<()> {
    let kernel = VmKernel::get(Series::V6_12)?;
    let lime = format!(
        "--lime-module /root/lime.ko --lime-sha256 {}",
        sha256(&std::fs::read(&kernel.lime_ko)?)
    );
    let server = S3Server::start(ServerKind::Garage)?;
    let work = tempfile::tempdir()?;
    for (source, extra, boot) in [
        ("kcore", "", &["--kaslr"][..]),
        ("lime", lime.as_str(), &["--kaslr"][..]),
    ] {
        let run = guest_on(&kernel, Some(&server), boot, &memory_cmd(source, extra))?;
        let c = check_capture(&server, &run, source, work.path())?;
        ensure!(
            c.manifest["source"]["kernel_release"] == kernel.release.as_str(),
            "{}",
            c.manifest["source"]["kernel_release"]
        );
        symbols_open_the_image(&server, &c, &run, work.path())?;
        std::fs::remove_file(&c.image)?;
    }
    let cmd = format!(
        "echo 2 > /proc/sys/kernel/kptr_restrict; {}; echo \"KPTR_AFTER=$(cat /proc/sys/kernel/kptr_restrict)\" >&2",
        memory_cmd("kcore", "")
    );
    let run = guest_on(&kernel, Some(&server), &[], &cmd)?;
    let c = check_capture(&server, &run, "kcore", work.path())?;
    let inputs = &c.manifest["source"]["symbol_inputs"];
    ensure!(
        inputs["kptr_restrict"] == 2
            && inputs["sysctl_changes"][0]["name"] == "kernel.kptr_restrict"
            && inputs["sysctl_changes"][0]["from"] == "2"
            && inputs["sysctl_changes"][0]["to"] == "1"
            && inputs["sysctl_changes"][0]["restored"] == true,
        "the kptr_restrict change must be recorded: {inputs:#}"
    );
    ensure!(
        marker(&run.stderr, "KPTR_AFTER")? == "2",
        "kptr_restrict not restored"
    );
    symbols_open_the_image(&server, &c, &run, work.path()).map(|_| ())
}

/// The analyst's path from the bucket: `airf-agent fetch` copies, verifies and unpacks the
/// image with its table, and the command it prints runs as printed.
#[test]
#[ignore = "boots a VM; run by tests/vm/run-tests.sh"]
fn fetch_then_the_printed_vol_command_lists_the_canary() -> Result<()> {
    let server = S3Server::start(ServerKind::Garage)?;
    let work = tempfile::tempdir()?;
    // The table is built at capture time this once (`--symbols`), so fetch takes the stored one.
    let run = guest(
        Some(&server),
        &["--kaslr"],
        &memory_cmd("kcore", "--symbols"),
    )?;
    let c = check_capture(&server, &run, "kcore", work.path())?;
    let result: serde_json::Value = serde_json::from_str(&run.stdout)?;
    ensure!(
        result["sources"][0]["symbol_table"]["location"]
            .as_str()
            .is_some_and(|l| l.ends_with("/memory.isf.json.xz")),
        "memory --symbols stored no table: {result:#}"
    );
    let to = work.path().join("analyst");
    let fetched = run_agent(server.command(agent_bin()?).args([
        "fetch",
        &format!("s3://{}/{}", server.bucket, c.manifest_key),
        "--to",
        &to.display().to_string(),
        "--json",
    ]))?;
    ensure!(fetched.code == 0, "fetch failed: {fetched:?}");
    let f: serde_json::Value = serde_json::from_str(&fetched.stdout)?;
    ensure!(
        f["verified"] == "intact" && f["symbol_table_origin"] == "stored",
        "{f:#}"
    );
    let unpacked = std::path::PathBuf::from(f["unpacked"].as_str().context("unpacked")?);
    ensure!(sha256(&std::fs::read(&unpacked)?) == sha256(&std::fs::read(&c.image)?));
    let command = f["vol_command"].as_str().context("vol_command")?;
    let guest_state = volatility::GuestState::parse(&run.stderr)?;
    let cache = work.path().join("vol-cache");
    std::fs::create_dir_all(&cache)?;
    let printed = command
        .strip_prefix("vol ")
        .context("the printed command does not start with vol")?;
    let out = std::process::Command::new(volatility::vol_bin())
        .args(["-q", "-r", "json", "--offline", "--cache-path"])
        .arg(&cache)
        .args(printed.split(' '))
        .output()?;
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "{command}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    ensure!(
        rows.iter()
            .any(|r| r["PID"] == guest_state.canary_pid && r["COMM"] == "airfcanary"),
        "{command} does not list the canary"
    );
    Ok(())
}
