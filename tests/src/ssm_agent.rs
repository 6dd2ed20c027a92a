//! The SSM Agent's registration as the emulated SSM reports it: tests/scripts/moto_aws.py
//! leaves an instance out of DescribeInstanceInformation while its
//! `$AIRF_SSM_OUTPUT_DIR/unregistered/<instance-id>` exists, as AWS does for an instance whose
//! agent has not registered (yet: it backs off up to 30 minutes after it was denied credentials).

use anyhow::{Context, Result};
use std::path::PathBuf;

use crate::emulator::Emulator;

impl Emulator {
    /// Whether the instance's SSM Agent is registered (then Online while the instance runs and
    /// has an instance profile) or not (absent from DescribeInstanceInformation).
    pub fn set_ssm_registered(&self, instance_id: &str, registered: bool) -> Result<()> {
        let marker = self.unregistered_dir()?.join(instance_id);
        if registered {
            match std::fs::remove_file(&marker) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(e).with_context(|| format!("removing {}", marker.display()))
                }
                _ => Ok(()),
            }
        } else {
            let dir = self.unregistered_dir()?;
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            std::fs::write(&marker, b"").with_context(|| format!("writing {}", marker.display()))
        }
    }

    /// `$AIRF_SSM_OUTPUT_DIR/unregistered` of the emulator's moto.
    fn unregistered_dir(&self) -> Result<PathBuf> {
        let dir = self
            .server
            .env
            .iter()
            .find(|(k, _)| k == "AIRF_SSM_OUTPUT_DIR")
            .map(|(_, v)| PathBuf::from(v))
            .context("moto was started without AIRF_SSM_OUTPUT_DIR")?;
        Ok(dir.join("unregistered"))
    }
}
