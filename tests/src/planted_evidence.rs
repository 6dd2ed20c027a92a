//! The instance's side of both acquisitions, for workflow tests without a VM: what the agent
//! would store for a memory and a disk capture (images, manifests, and beside the memory image
//! the four inputs of a Volatility symbol table), written into the emulator's evidence bucket as
//! the agent writes it (a session of the acquisition role, `If-None-Match: *`, SHA-256
//! checksums, the deployment's KMS key), and the agent's JSON results that answer the commands.
//!
//! The kernel is `airf_isf::testing`'s toy kernel: this machine has no `/proc/kcore` to capture.
//! Manifests are built as JSON and read back with the controller's own parser, so a field the
//! schema requires and this file forgets fails here, not as a puzzling verify error.

use anyhow::{Context, Result, ensure};
use aws_config::{BehaviorVersion, Region};
use base64::Engine as _;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::emulator::{Emulator, REGION};
use airf_controller::actions::verify::parse_manifest;
use airf_isf::table::InputBytes;

/// Object names of the four inputs, as the agent stores them (`airf_evidence::symbols::names`).
pub const BTF: &str = "memory.btf-vmlinux";
pub const KALLSYMS: &str = "memory.kallsyms.txt";
pub const VMCOREINFO: &str = "memory.vmcoreinfo.txt";
pub const BANNER: &str = "memory.proc-version.txt";

/// What the capture could store of the four inputs.
#[derive(Debug, Clone)]
pub enum SymbolInputs {
    /// All four, and the manifest says complete.
    Complete(InputBytes),
    /// A kernel without BTF (`CONFIG_DEBUG_INFO_BTF` off): the other three are stored and the
    /// manifest says why there can be no table, in the agent's words.
    WithoutBtf(InputBytes),
}

/// Why a capture without BTF has no table, as the agent's manifest words it.
pub const NO_BTF: &str = "this kernel has no BTF (/sys/kernel/btf/vmlinux: No such file or directory (os error 2)): no symbol table can be built from this capture; build one from the kernel's debug package with dwarf2json";

/// The evidence planted for one instance of one case.
#[derive(Debug)]
pub struct PlantedEvidence {
    /// The agent's memory result, as the memory document prints it.
    pub memory: Value,
    /// The agent's disk result.
    pub disk: Value,
    /// The folder of the memory capture (`<prefix>/<case>/<instance>/<run>`).
    pub memory_folder: String,
    /// The memory manifest's key.
    pub memory_manifest: String,
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The S3 client of the agent on instance `id`: the acquisition role's session.
fn agent_s3(emu: &Emulator, id: &str) -> Result<aws_sdk_s3::Client> {
    let creds = emu.acquisition_credentials(id)?;
    let sdk = emu.rt.block_on(
        aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(emu.server.endpoint()?)
            .region(Region::new(REGION))
            .credentials_provider(creds)
            .load(),
    );
    Ok(aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    ))
}

/// One object, stored as the agent stores small objects.
fn put(emu: &Emulator, s3: &aws_sdk_s3::Client, key: &str, body: &[u8]) -> Result<()> {
    let checksum = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(body));
    let mut put = s3
        .put_object()
        .bucket(&emu.config.evidence_bucket)
        .key(key)
        .if_none_match("*")
        .checksum_sha256(checksum)
        .body(body.to_vec().into());
    if !emu.config.kms_key_id.is_empty() {
        put = put
            .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
            .ssekms_key_id(&emu.config.kms_key_id);
    }
    emu.rt
        .block_on(put.send())
        .with_context(|| format!("storing {key}"))?;
    Ok(())
}

/// An image as stored: its key, its stored bytes and the raw stream they hold.
struct Image<'a> {
    key: &'a str,
    stored: &'a [u8],
    raw: &'a [u8],
}

impl Image<'_> {
    /// Where it is, as the agent records it.
    fn object(&self, emu: &Emulator) -> Value {
        let bucket = &emu.config.evidence_bucket;
        json!({"location": format!("s3://{bucket}/{}", self.key), "bucket": bucket,
            "key": self.key, "parts": 1, "part_size": 8 << 20})
    }
}

/// A manifest of `kind` for `image`, with the source's facts.
fn manifest(
    emu: &Emulator,
    case: &str,
    id: &str,
    kind: &str,
    image: &Image<'_>,
    source: Value,
) -> Value {
    json!({
        "schema_version": 1,
        "tool": {"name": "airf-agent", "version": env!("CARGO_PKG_VERSION")},
        "case": case, "kind": kind, "status": "complete",
        "host": {"hostname": id, "kernel_release": airf_isf::testing::RELEASE,
            "ec2": {"instance_id": id, "account_id": crate::emulator::ACCOUNT, "region": REGION}},
        "source": source,
        "started_at": "2026-12-02T06:00:00Z", "finished_at": "2026-12-02T06:01:00Z",
        "raw": {"size": image.raw.len(), "sha256": sha256(image.raw)},
        "compressed": {"format": "zstd-seekable", "size": image.stored.len(),
            "sha256": sha256(image.stored), "level": 3, "frame_size": 4 << 20, "frames": 1},
        "image": image.object(emu),
        "unreadable": {"ranges": [], "total_bytes": 0, "omitted": 0},
        "agent": {"peak_rss_bytes": 1 << 20, "threads": 1}
    })
}

/// The agent's result for one source (`source`, e.g. `/proc/kcore`) whose manifest is at
/// `manifest_key`.
fn report(
    emu: &Emulator,
    command: &str,
    case: &str,
    folder: &str,
    source: &str,
    manifest_key: &str,
    image: &Image<'_>,
) -> Value {
    let bucket = &emu.config.evidence_bucket;
    json!({
        "command": command, "status": "complete", "exit_code": 0, "case": case,
        "evidence_folder": format!("s3://{bucket}/{folder}/"),
        "sources": [{
            "source": source, "status": "complete",
            "image": image.object(emu),
            "manifest": {"location": format!("s3://{bucket}/{manifest_key}"), "bucket": bucket,
                "key": manifest_key},
            "raw_size": image.raw.len(), "raw_sha256": sha256(image.raw),
            "compressed_size": image.stored.len(), "compressed_sha256": sha256(image.stored),
            "unreadable_bytes": 0, "unreadable_ranges": 0,
            "duration_seconds": 60.0, "throughput_mb_s": 1.0
        }],
        "errors": [], "duration_seconds": 60.0
    })
}

impl PlantedEvidence {
    /// Stores instance `id`'s memory capture (with `inputs`) and a disk capture for `case`.
    pub fn plant(emu: &Emulator, id: &str, case: &str, inputs: &SymbolInputs) -> Result<Self> {
        let s3 = agent_s3(emu, id)?;
        let prefix = &emu.config.evidence_prefix;
        let folder = format!("{prefix}/{case}/{id}/20261202T060000Z-planted");

        // Memory: a LiME header's worth of bytes stands for the image (verify reads its size,
        // never its content; the Symbols step reads neither).
        let raw: Vec<u8> = b"EMiL".iter().copied().cycle().take(4096).collect();
        let image = raw.clone();
        let (bytes, without_btf) = match inputs {
            SymbolInputs::Complete(b) => (b, false),
            SymbolInputs::WithoutBtf(b) => (b, true),
        };
        let files = [
            (BTF, &bytes.btf, "/sys/kernel/btf/vmlinux"),
            (KALLSYMS, &bytes.kallsyms, "/proc/kallsyms"),
            (VMCOREINFO, &bytes.vmcoreinfo, "/proc/kcore VMCOREINFO note"),
            (BANNER, &bytes.banner, "/proc/version"),
        ];
        let mut artifacts = Vec::new();
        let mut missing = Vec::new();
        for (name, content, origin) in files {
            if without_btf && name == BTF {
                missing.push(json!({"name": name, "origin": origin,
                    "cause": "No such file or directory (os error 2)"}));
                continue;
            }
            let key = format!("{folder}/{name}");
            put(emu, &s3, &key, content)?;
            artifacts.push(
                json!({"name": name, "origin": origin, "size": content.len(),
                "sha256": sha256(content),
                "location": format!("s3://{}/{key}", emu.config.evidence_bucket)}),
            );
        }
        let symbol_inputs = if without_btf {
            json!({"complete": false, "problems": [NO_BTF], "kptr_restrict": 0, "kallsyms_zeroed": false})
        } else {
            json!({"complete": true, "kptr_restrict": 0, "kallsyms_zeroed": false})
        };
        let banner = String::from_utf8_lossy(&bytes.banner).trim_end().to_owned();
        let image_key = format!("{folder}/memory.lime.zst");
        put(emu, &s3, &image_key, &image)?;
        let memory_image = Image {
            key: &image_key,
            stored: &image,
            raw: &raw,
        };
        let memory = manifest(
            emu,
            case,
            id,
            "memory",
            &memory_image,
            json!({
                "type": "memory", "source_used": "kcore", "format": "lime",
                "ram_ranges": [{"start": 0x10_0000, "end": 0x10_0fff}], "ram_bytes": 4096,
                "banner": banner, "kernel_release": airf_isf::testing::RELEASE,
                "kcore_segments": 1, "artifacts": artifacts, "artifacts_missing": missing,
                "unreadable_offsets": "physical addresses", "symbol_inputs": symbol_inputs
            }),
        );
        let memory_manifest = format!("{folder}/memory.manifest.json");
        let text = serde_json::to_vec_pretty(&memory)?;
        parse_manifest(&text).context("the planted memory manifest does not parse")?;
        put(emu, &s3, &memory_manifest, &text)?;
        let memory_report = report(
            emu,
            "memory",
            case,
            &folder,
            "/proc/kcore",
            &memory_manifest,
            &memory_image,
        );

        // A disk of 64 KiB.
        let disk_raw: Vec<u8> = (0..64u32 << 10).map(|i| (i / 512 % 251) as u8).collect();
        let disk_key = format!("{folder}/nvme0n1.raw.zst");
        put(emu, &s3, &disk_key, &disk_raw)?;
        let disk_image = Image {
            key: &disk_key,
            stored: &disk_raw,
            raw: &disk_raw,
        };
        let disk = manifest(
            emu,
            case,
            id,
            "disk",
            &disk_image,
            json!({"type": "disk", "path": "/dev/nvme0n1", "canonical_path": "/dev/nvme0n1",
                "kind": "block_device", "size": disk_raw.len(), "sector_size": 512,
                "device_number": "259:0"}),
        );
        let disk_manifest = format!("{folder}/nvme0n1.manifest.json");
        let text = serde_json::to_vec_pretty(&disk)?;
        parse_manifest(&text).context("the planted disk manifest does not parse")?;
        put(emu, &s3, &disk_manifest, &text)?;
        let disk_report = report(
            emu,
            "disk",
            case,
            &folder,
            "/dev/nvme0n1",
            &disk_manifest,
            &disk_image,
        );
        Ok(PlantedEvidence {
            memory: memory_report,
            disk: disk_report,
            memory_folder: folder,
            memory_manifest,
        })
    }

    /// Answers command `command_id` of acquisition `kind` with the planted result.
    pub fn answer(&self, emu: &Emulator, kind: &str, command_id: &str) -> Result<()> {
        let result = match kind {
            "memory" => &self.memory,
            "disk" => &self.disk,
            other => anyhow::bail!("unknown acquisition {other}"),
        };
        ensure!(result["status"] == "complete", "{result}");
        emu.answer_command(command_id, "Success", &result.to_string(), "")
    }
}
