//! Facts about the machine being acquired: who it is, what kernel, since when.
//!
//! Boot id and uptime are read with `procfs`; the kernel release comes from `uname(2)`
//! verbatim (procfs's `KernelVersion` keeps only the numbers, the manifest needs the exact
//! release).
//!
//! EC2 identity comes from IMDSv2 with short timeouts, and only when the machine looks like EC2
//! (DMI vendor or Xen UUID), when `AWS_EC2_METADATA_SERVICE_ENDPOINT` names an endpoint
//! explicitly, and never when `AWS_EC2_METADATA_DISABLED=true`: off EC2 nothing is sent.

use std::time::Duration;

use procfs::Current;
use serde::Deserialize;

pub use airf_evidence::host::{Ec2Identity, HostFacts};

/// The name evidence is filed under: the instance id on EC2, else the hostname.
pub fn evidence_name(host: &HostFacts) -> String {
    let name = host
        .ec2
        .as_ref()
        .map_or(host.hostname.as_str(), |e| e.instance_id.as_str());
    sanitize(name)
}

/// Keeps a name safe as one path or key component.
pub fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let s = s.trim_matches('.').to_owned();
    if s.is_empty() { "unknown".into() } else { s }
}

/// Gathers host facts; never fails (missing facts are left out).
pub async fn gather() -> HostFacts {
    let uname = nix::sys::utsname::uname().ok();
    HostFacts {
        hostname: nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "unknown".into()),
        kernel_release: uname
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default(),
        boot_id: boot_id(),
        uptime_seconds: uptime_seconds(),
        ec2: if imds_wanted() {
            ec2_identity().await
        } else {
            None
        },
    }
}

/// `/proc/sys/kernel/random/boot_id`, trimmed.
fn boot_id() -> Option<String> {
    procfs::sys::kernel::random::boot_id()
        .ok()
        .filter(|id| !id.is_empty())
}

/// The first number of `/proc/uptime`.
fn uptime_seconds() -> Option<f64> {
    procfs::Uptime::current().ok().map(|u| u.uptime)
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn imds_wanted() -> bool {
    let disabled =
        std::env::var("AWS_EC2_METADATA_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    if disabled {
        return false;
    }
    if std::env::var_os("AWS_EC2_METADATA_SERVICE_ENDPOINT").is_some() {
        return true;
    }
    looks_like_ec2(
        read_trimmed("/sys/class/dmi/id/sys_vendor").as_deref(),
        read_trimmed("/sys/class/dmi/id/board_asset_tag").as_deref(),
        read_trimmed("/sys/hypervisor/uuid").as_deref(),
    )
}

/// Nitro instances report "Amazon EC2" as DMI vendor and the instance id as asset tag; Xen
/// instances have a hypervisor UUID starting with "ec2".
fn looks_like_ec2(vendor: Option<&str>, asset_tag: Option<&str>, xen_uuid: Option<&str>) -> bool {
    vendor.is_some_and(|v| v.contains("Amazon EC2"))
        || asset_tag.is_some_and(|t| t.starts_with("i-"))
        || xen_uuid.is_some_and(|u| u.to_ascii_lowercase().starts_with("ec2"))
}

async fn ec2_identity() -> Option<Ec2Identity> {
    let client = aws_config::imds::Client::builder()
        .connect_timeout(Duration::from_secs(1))
        .read_timeout(Duration::from_secs(2))
        .max_attempts(2)
        .build();
    let doc = client
        .get("/latest/dynamic/instance-identity/document")
        .await
        .ok()?;
    parse_identity(doc.as_ref())
}

/// Parses the instance identity document (untrusted JSON).
pub fn parse_identity(doc: &str) -> Option<Ec2Identity> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Doc {
        instance_id: String,
        account_id: String,
        region: String,
        availability_zone: Option<String>,
        instance_type: Option<String>,
        image_id: Option<String>,
    }
    let d: Doc = serde_json::from_str(doc).ok()?;
    Some(Ec2Identity {
        instance_id: d.instance_id,
        account_id: d.account_id,
        region: d.region,
        availability_zone: d.availability_zone,
        instance_type: d.instance_type,
        image_id: d.image_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn identity_document_is_parsed() {
        let doc = r#"{"accountId":"123456789012","architecture":"x86_64","availabilityZone":"eu-west-1a","imageId":"ami-1","instanceId":"i-0abc","instanceType":"m5.large","region":"eu-west-1","version":"2017-09-30"}"#;
        let id = parse_identity(doc);
        assert_eq!(id.as_ref().map(|i| i.instance_id.as_str()), Some("i-0abc"));
        assert_eq!(id.as_ref().map(|i| i.region.as_str()), Some("eu-west-1"));
    }

    #[test]
    fn ec2_detection() {
        assert!(looks_like_ec2(Some("Amazon EC2"), None, None));
        assert!(looks_like_ec2(None, Some("i-0123"), None));
        assert!(looks_like_ec2(
            None,
            None,
            Some("EC2E1916-9099-7CAF-FD21-012345ABCDEF")
        ));
        assert!(!looks_like_ec2(Some("QEMU"), Some("none"), None));
    }

    /// Every Linux host, container or not, has both; a missing one would vanish from every
    /// manifest without an error.
    #[test]
    fn boot_id_and_uptime_are_read() {
        let id = boot_id().unwrap();
        assert_eq!(id.len(), 36, "{id:?}");
        assert!(uptime_seconds().unwrap() > 0.0);
    }

    #[test]
    fn names_are_safe_path_components() {
        assert_eq!(sanitize("web-1.example"), "web-1.example");
        assert_eq!(sanitize("../../etc"), "_.._etc");
        assert_eq!(sanitize(""), "unknown");
    }

    proptest! {
        #[test]
        fn identity_parser_never_panics(s in ".*") {
            let _ = parse_identity(&s);
        }

        #[test]
        fn sanitized_names_never_contain_separators(s in ".*") {
            let n = sanitize(&s);
            prop_assert!(!n.contains('/') && !n.is_empty() && n != "." && n != "..");
        }
    }
}
