//! A table with its manifest, from the four inputs' bytes: what `airf-agent symbols`, `memory
//! --symbols` and the controller's Symbols step store beside a memory image.

use std::time::Instant;

use airf_evidence::symbols::{SymbolTableManifest, TableInput, names};
use sha2::{Digest as _, Sha256};

use crate::IsfError;

/// The four inputs of a table.
#[derive(Debug, Clone)]
pub struct InputBytes {
    pub btf: Vec<u8>,
    pub kallsyms: Vec<u8>,
    pub vmcoreinfo: Vec<u8>,
    pub banner: Vec<u8>,
}

/// A table and its manifest, ready to store.
#[derive(Debug)]
pub struct BuiltTable {
    pub xz: Vec<u8>,
    pub manifest: SymbolTableManifest,
}

/// `name`'s size and SHA-256, as a table manifest lists its inputs.
pub fn input(name: &str, bytes: &[u8]) -> TableInput {
    TableInput {
        name: name.to_owned(),
        size: bytes.len() as u64,
        sha256: hex::encode(Sha256::digest(bytes)),
    }
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Builds the table of `inputs`.
pub fn build(
    inputs: &InputBytes,
    memory_manifest: Option<TableInput>,
    made_by: &str,
) -> Result<BuiltTable, IsfError> {
    let started = Instant::now();
    let (isf, summary) = crate::generate(&crate::Inputs {
        btf: crate::Input {
            name: names::BTF,
            bytes: &inputs.btf,
        },
        kallsyms: crate::Input {
            name: names::KALLSYMS,
            bytes: &inputs.kallsyms,
        },
        vmcoreinfo: crate::Input {
            name: names::VMCOREINFO,
            bytes: &inputs.vmcoreinfo,
        },
        banner: crate::Input {
            name: names::BANNER,
            bytes: &inputs.banner,
        },
    })?;
    let json = serde_json::to_vec(&isf).map_err(IsfError::from)?;
    let json_sha256 = hex::encode(Sha256::digest(&json));
    let xz = crate::compress(&isf)?;
    let manifest = SymbolTableManifest {
        kind: "isf".into(),
        table: names::TABLE.into(),
        size: xz.len() as u64,
        sha256: hex::encode(Sha256::digest(&xz)),
        json_sha256,
        memory_manifest,
        inputs: vec![
            input(names::BTF, &inputs.btf),
            input(names::KALLSYMS, &inputs.kallsyms),
            input(names::VMCOREINFO, &inputs.vmcoreinfo),
            input(names::BANNER, &inputs.banner),
        ],
        producer: format!("{} {}", crate::PRODUCER, env!("CARGO_PKG_VERSION")),
        made_by: made_by.into(),
        generated_at: now(),
        duration_seconds: started.elapsed().as_secs_f64(),
        summary,
        extra: Default::default(),
    };
    Ok(BuiltTable { xz, manifest })
}

/// The table's manifest as stored: pretty JSON with a final newline.
pub fn manifest_bytes(manifest: &SymbolTableManifest) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(manifest).unwrap_or_default();
    out.push(b'\n');
    out
}
