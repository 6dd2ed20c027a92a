//! One module per workflow step. Each has a pure decision (tested with plain values) and an
//! async function that applies it through [`crate::cloud::Cloud`].

pub mod acquire;
pub mod claim;
pub mod contain;
pub mod control_plane;
pub mod egress;
pub mod fail;
pub mod isolate;
pub mod prepare;
pub mod release;
pub mod snapshots;
pub mod start;
pub mod symbols;
pub mod verify;

use crate::cloud::Cloud;
use crate::error::{Error, Result};
use crate::model::{InstanceFacts, Target};

/// DescribeInstances, with "not found" as a failure that names where the controller looked.
pub(crate) async fn instance<C: Cloud>(cloud: &C, target: &Target) -> Result<InstanceFacts> {
    cloud.describe_instance(target).await?.ok_or_else(|| {
        Error::failed(format!(
            "instance {} not found in account {} region {} (terminated, or the member role cannot see it)",
            target.instance_id, target.account, target.region
        ))
    })
}
