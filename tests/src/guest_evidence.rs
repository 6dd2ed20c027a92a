//! Real evidence for a workflow run: a QEMU guest named like the emulator's EC2 instance runs
//! what the two acquisition documents run (the static agent: memory from /proc/kcore, then its
//! virtio disk) into the emulator's evidence bucket, and its JSON results answer the commands
//! when the workflow sends them. verify then reads real manifests back.

use anyhow::{Context, Result, ensure};
use serde_json::Value;

use crate::emulator::Emulator;
use crate::vm::guest;

/// What the guest acquired for one case.
#[derive(Debug)]
pub struct GuestEvidence {
    /// The agent's memory result, as the memory document prints it.
    pub memory: Value,
    /// The agent's disk result, as the disk document prints it.
    pub disk: Value,
    /// The bytes of the guest's disk (16 MiB, a pattern): its hash is the disk image's.
    pub disk_bytes: Vec<u8>,
}

impl GuestEvidence {
    /// Boots the guest as instance `id` and acquires its memory and disk for `case`.
    pub fn acquire(emu: &Emulator, id: &str, case: &str) -> Result<Self> {
        let work = tempfile::tempdir()?;
        let img = work.path().join("disk.img");
        let disk_bytes: Vec<u8> = (0..16u32 << 20).map(|i| (i / 512 % 251) as u8).collect();
        std::fs::write(&img, &disk_bytes)?;
        let to = r#"--to "s3://$AIRF_TEST_BUCKET/evidence" --no-progress --json"#;
        // The agent files evidence under the instance id: from IMDS on EC2, else the hostname.
        let script = format!(
            "hostname {id}; \
             airf-agent memory --source kcore --case {case} {to} >/tmp/m.json; echo MEMRC=$? >&2; \
             airf-agent disk /dev/vda --case {case} {to} >/tmp/d.json; echo DISKRC=$? >&2; \
             echo ==MEMORY==; cat /tmp/m.json; echo ==DISK==; cat /tmp/d.json"
        );
        let run = guest(
            Some(&emu.server),
            &["--disk", &format!("{},ro", img.display())],
            &script,
        )?;
        ensure!(
            run.stderr.contains("MEMRC=0") && run.stderr.contains("DISKRC=0"),
            "guest agent failed:\n{}\n{}",
            run.stdout,
            run.stderr
        );
        let (memory, disk) = run
            .stdout
            .split_once("==MEMORY==")
            .and_then(|(_, rest)| rest.split_once("==DISK=="))
            .context("guest output without markers")?;
        Ok(GuestEvidence {
            memory: serde_json::from_str(memory)
                .with_context(|| format!("memory result: {memory}"))?,
            disk: serde_json::from_str(disk).with_context(|| format!("disk result: {disk}"))?,
            disk_bytes,
        })
    }

    /// Answers command `command_id` of acquisition `kind` with the guest's result.
    pub fn answer(&self, emu: &Emulator, kind: &str, command_id: &str) -> Result<()> {
        let result = match kind {
            "memory" => &self.memory,
            "disk" => &self.disk,
            other => anyhow::bail!("unknown acquisition {other}"),
        };
        // The documents print the agent's result compacted onto one line.
        emu.answer_command(command_id, "Success", &result.to_string(), "")
    }
}
