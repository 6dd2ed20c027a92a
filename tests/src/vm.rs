//! Runs a script in the test VM (tests/vm/run.sh): a Debian kernel under QEMU with the static
//! agent and lime.ko in a busybox initramfs; an S3 server on the host is reachable from the guest.
//!
//! Two Debian 12 kernel series are prepared ([`Series`]), so a memory test can show it works on
//! more than one build: tests/vm/run-tests.sh names each prepared kernel and its lime.ko in
//! `AIRF_VM_KERNELS`, read by [`VmKernel::get`]. [`guest`] and [`guest_via`] boot the 6.1 kernel;
//! [`guest_on`] boots the one given.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};

use crate::{S3Server, repo_root};

/// Guest port that reaches the S3 server on the host.
pub const GUEST_S3_PORT: u16 = 9000;

/// The environment variable tests/vm/run-tests.sh sets: `RELEASE:LIME_KO` pairs, space separated.
pub const KERNELS_ENV: &str = "AIRF_VM_KERNELS";

/// A path from the environment that must exist (set by tests/vm/run-tests.sh).
pub fn env_path(name: &str) -> Result<PathBuf> {
    let p = std::env::var_os(name).map(PathBuf::from).with_context(|| {
        format!("{name} is not set; run these tests with tests/vm/run-tests.sh")
    })?;
    ensure!(p.exists(), "{name}={} does not exist", p.display());
    Ok(p)
}

/// A Debian 12 kernel series the VM boots (tests/vm/prepare.sh, `AIRF_VM_SERIES`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Series {
    /// Debian 12's own kernel: releases `6.1.0-<abi>-amd64`.
    V6_1,
    /// The newer kernel Debian 12 ships in bookworm-security: releases `6.12.<n>+deb12-amd64`.
    V6_12,
}

impl Series {
    /// Every series, oldest first.
    pub const ALL: [Series; 2] = [Series::V6_1, Series::V6_12];

    /// The name prepare.sh and run.sh use (`6.1`, `6.12`).
    pub fn name(self) -> &'static str {
        match self {
            Series::V6_1 => "6.1",
            Series::V6_12 => "6.12",
        }
    }

    /// The series of a Debian 12 amd64 kernel release, `None` for any other release (another
    /// flavour such as `-cloud-amd64`, another distribution, another series).
    pub fn of_release(release: &str) -> Option<Series> {
        let rest = release.strip_suffix("-amd64")?;
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if let Some(abi) = rest.strip_prefix("6.1.0-") {
            return digits(abi).then_some(Series::V6_1);
        }
        let patch = rest.strip_prefix("6.12.")?.strip_suffix("+deb12")?;
        digits(patch).then_some(Series::V6_12)
    }
}

/// A prepared guest kernel and the lime.ko built for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmKernel {
    /// Its series.
    pub series: Series,
    /// `uname -r` in the guest, e.g. `6.12.118+deb12-amd64`.
    pub release: String,
    /// lime.ko built for this release (host path).
    pub lime_ko: PathBuf,
}

impl VmKernel {
    /// The prepared kernel of `series`, from `AIRF_VM_KERNELS`.
    pub fn get(series: Series) -> Result<VmKernel> {
        Self::all()?
            .into_iter()
            .find(|k| k.series == series)
            .with_context(|| {
                format!(
                    "{KERNELS_ENV} names no {} kernel; run these tests with tests/vm/run-tests.sh",
                    series.name()
                )
            })
    }

    /// Every prepared kernel, from `AIRF_VM_KERNELS`; each lime.ko must exist.
    pub fn all() -> Result<Vec<VmKernel>> {
        let value = std::env::var(KERNELS_ENV).with_context(|| {
            format!("{KERNELS_ENV} is not set; run these tests with tests/vm/run-tests.sh")
        })?;
        let kernels = parse_kernels(&value)?;
        for k in &kernels {
            ensure!(
                k.lime_ko.exists(),
                "{KERNELS_ENV}: lime.ko for {} ({}) does not exist",
                k.release,
                k.lime_ko.display()
            );
        }
        Ok(kernels)
    }
}

/// Parses `AIRF_VM_KERNELS`: `RELEASE:LIME_KO` pairs separated by white space, at most one
/// release per series.
pub fn parse_kernels(value: &str) -> Result<Vec<VmKernel>> {
    let mut kernels: Vec<VmKernel> = Vec::new();
    for item in value.split_whitespace() {
        let (release, lime) = item
            .split_once(':')
            .with_context(|| format!("{KERNELS_ENV}: '{item}' is not RELEASE:LIME_KO"))?;
        ensure!(
            !lime.is_empty(),
            "{KERNELS_ENV}: '{item}' has no lime.ko path"
        );
        let series = Series::of_release(release).with_context(|| {
            format!("{KERNELS_ENV}: '{release}' is not a Debian 12 6.1 or 6.12 amd64 release")
        })?;
        if let Some(other) = kernels.iter().find(|k| k.series == series) {
            bail!(
                "{KERNELS_ENV} names two {} kernels: {} and {release}",
                series.name(),
                other.release
            );
        }
        kernels.push(VmKernel {
            series,
            release: release.to_owned(),
            lime_ko: PathBuf::from(lime),
        });
    }
    ensure!(!kernels.is_empty(), "{KERNELS_ENV} is empty");
    Ok(kernels)
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

/// Boots the 6.1 guest with the static agent at /usr/bin/airf-agent (and lime.ko at
/// /root/lime.ko) and runs `script` in it; `server`, when given, is reachable as
/// AWS_ENDPOINT_URL.
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
    boot(&VmKernel::get(Series::V6_1)?, server, via, extra, script)
}

/// Like [`guest`], on `kernel` (with its lime.ko at /root/lime.ko).
pub fn guest_on(
    kernel: &VmKernel,
    server: Option<&S3Server>,
    extra: &[&str],
    script: &str,
) -> Result<GuestRun> {
    boot(kernel, server, None, extra, script)
}

fn boot(
    kernel: &VmKernel,
    server: Option<&S3Server>,
    via: Option<u16>,
    extra: &[&str],
    script: &str,
) -> Result<GuestRun> {
    let agent = env_path("AIRF_STATIC_AGENT")?;
    let mut cmd = Command::new(repo_root().join("tests/vm/run.sh"));
    cmd.args(["--kernel", &kernel.release])
        .args(["--mem", "512M", "--smp", "2", "--timeout", "900"])
        .arg("--file")
        .arg(format!("{}:/usr/bin/airf-agent", agent.display()))
        .arg("--file")
        .arg(format!("{}:/root/lime.ko", kernel.lime_ko.display()))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_map_to_their_series() {
        assert_eq!(Series::of_release("6.1.0-57-amd64"), Some(Series::V6_1));
        assert_eq!(Series::of_release("6.1.0-9-amd64"), Some(Series::V6_1));
        assert_eq!(
            Series::of_release("6.12.118+deb12-amd64"),
            Some(Series::V6_12)
        );
        for other in [
            "6.1.0-57-cloud-amd64",
            "6.1.0-57-rt-amd64",
            "6.1.0--amd64",
            "6.1.0-57-arm64",
            "6.12.118+deb12-cloud-amd64",
            "6.12.118+deb13-amd64",
            "6.12+deb12-amd64",
            "6.10.1+deb12-amd64",
            "6.1.12+deb12-amd64",
            "",
        ] {
            assert_eq!(Series::of_release(other), None, "{other}");
        }
    }

    #[test]
    fn kernels_are_read_from_release_lime_pairs() {
        let ks = parse_kernels(
            " 6.1.0-57-amd64:/c/vm/6.1.0-57-amd64/lime.ko\n\
             6.12.118+deb12-amd64:/c/vm/6.12.118+deb12-amd64/lime.ko ",
        )
        .unwrap();
        assert_eq!(
            ks,
            [
                VmKernel {
                    series: Series::V6_1,
                    release: "6.1.0-57-amd64".into(),
                    lime_ko: "/c/vm/6.1.0-57-amd64/lime.ko".into(),
                },
                VmKernel {
                    series: Series::V6_12,
                    release: "6.12.118+deb12-amd64".into(),
                    lime_ko: "/c/vm/6.12.118+deb12-amd64/lime.ko".into(),
                },
            ]
        );
    }

    #[test]
    fn bad_kernel_lists_are_refused() {
        for (value, why) in [
            ("", "is empty"),
            ("6.1.0-57-amd64", "is not RELEASE:LIME_KO"),
            ("6.1.0-57-amd64:", "has no lime.ko"),
            ("5.10.0-30-amd64:/l.ko", "is not a Debian 12"),
            (
                "6.1.0-57-amd64:/a.ko 6.1.0-44-amd64:/b.ko",
                "two 6.1 kernels",
            ),
        ] {
            let err = parse_kernels(value).unwrap_err().to_string();
            assert!(err.contains(why), "{value:?}: {err}");
        }
    }

    /// Boots each prepared kernel through [`guest_on`]: the guest runs the release it was asked
    /// for, with that release's lime.ko, and has the BTF that symbol tables are built from.
    #[test]
    #[ignore = "boots a VM per series; run by tests/vm/run-tests.sh"]
    fn guest_on_boots_each_prepared_series() -> Result<()> {
        let kernels = VmKernel::all()?;
        let series: Vec<Series> = kernels.iter().map(|k| k.series).collect();
        ensure!(series == Series::ALL, "prepared series {series:?}");
        for k in &kernels {
            let run = guest_on(
                k,
                None,
                &[],
                "uname -r; strings /root/lime.ko | grep -m1 '^vermagic='; \
                 head -c 2 /sys/kernel/btf/vmlinux | od -A n -t x1",
            )?;
            ensure!(
                run.code == 0,
                "{}: exit {}: {}",
                k.release,
                run.code,
                run.stderr
            );
            let lines: Vec<&str> = run.stdout.lines().map(str::trim).collect();
            ensure!(
                lines.first() == Some(&k.release.as_str()),
                "asked for {}, booted {lines:?}",
                k.release
            );
            ensure!(
                lines.get(1).is_some_and(|v| v.contains(&k.release)),
                "{}: lime.ko vermagic {lines:?}",
                k.release
            );
            ensure!(
                lines.get(2) == Some(&"9f eb"),
                "{}: BTF {lines:?}",
                k.release
            );
        }
        Ok(())
    }
}
