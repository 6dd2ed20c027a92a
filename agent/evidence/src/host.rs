//! The acquired machine, as every manifest records it.

use serde::{Deserialize, Serialize};

/// The host, as recorded in every manifest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostFacts {
    /// `gethostname(2)`.
    pub hostname: String,
    /// `uname -r`.
    pub kernel_release: String,
    /// `/proc/sys/kernel/random/boot_id`: tells two boots of the same host apart.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// Seconds since boot (`/proc/uptime`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uptime_seconds: Option<f64>,
    /// EC2 identity, absent off EC2.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ec2: Option<Ec2Identity>,
}

/// The instance identity document's useful fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ec2Identity {
    /// `i-…`.
    pub instance_id: String,
    /// Owning account.
    pub account_id: String,
    /// Region.
    pub region: String,
    /// Availability zone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    /// Instance type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    /// AMI.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
}
