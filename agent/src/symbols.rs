//! Volatility symbol tables for stored memory images: read a memory manifest's BTF, kallsyms,
//! VMCOREINFO and banner (each checked against the manifest's SHA-256), build the table with
//! `airf-isf`, and store `memory.isf.json.xz` and its manifest beside the image.
//!
//! Used by `airf-agent symbols` (an analyst, on any stored image) and `airf-agent memory
//! --symbols` (at capture time, from the bytes just stored).

use airf_evidence::EvidenceKind;
use airf_evidence::symbols::{TableInput, names};
use aws_sdk_s3::Client;
use tokio::runtime::Handle;

pub use airf_isf::table::{BuiltTable, InputBytes, build, manifest_bytes};

use crate::hash::Sha256;
use crate::manifest::SourceFacts;
use crate::verify::store::{Location, ReadError, read_small};

/// Why no table was made for a stored image.
#[derive(Debug, thiserror::Error)]
pub enum SymbolsError {
    #[error("{0}")]
    Read(#[from] ReadError),
    #[error("{location} is not a memory manifest: {why}")]
    NotMemory { location: String, why: String },
    #[error("{name} is not in {manifest}: {why}")]
    InputMissing {
        name: &'static str,
        manifest: String,
        why: String,
    },
    #[error(
        "{name} does not match its manifest (SHA-256 {actual}, the manifest says {expected}): the evidence folder was altered; run `airf-agent verify`"
    )]
    InputAltered {
        name: &'static str,
        expected: String,
        actual: String,
    },
    #[error("no symbol table: {0}")]
    Generate(#[from] airf_isf::IsfError),
    #[error("storing {name}: {why}")]
    Store { name: &'static str, why: String },
}

/// Reads the inputs of the memory image whose manifest is at `loc`, each checked against the
/// manifest's size and SHA-256. Returns them with the manifest's own name and hash.
pub fn read_inputs(
    loc: &Location,
    s3: Option<(&Client, &Handle)>,
) -> Result<(InputBytes, TableInput), SymbolsError> {
    let raw = read_small(loc, s3)?;
    let not_memory = |why: String| SymbolsError::NotMemory {
        location: loc.display(),
        why,
    };
    let manifest = crate::manifest::parse(&raw).map_err(|e| not_memory(e.to_string()))?;
    if manifest.kind != EvidenceKind::Memory {
        return Err(not_memory(format!("it records {} evidence", manifest.kind)));
    }
    let SourceFacts::Memory(facts) = &manifest.source else {
        return Err(not_memory("it has no memory facts".into()));
    };
    let read = |name: &'static str| -> Result<Vec<u8>, SymbolsError> {
        let Some(art) = facts.artifacts.iter().find(|a| a.name == name) else {
            let why = facts
                .artifacts_missing
                .iter()
                .find(|m| m.name == name)
                .map_or_else(
                    || {
                        "the capture did not collect it (an agent older than symbol tables?)"
                            .to_owned()
                    },
                    |m| format!("the capture could not read {}: {}", m.origin, m.cause),
                );
            return Err(SymbolsError::InputMissing {
                name,
                manifest: loc.display(),
                why,
            });
        };
        let bytes = read_small(&loc.sibling(name), s3)?;
        let actual = hex::encode(Sha256::digest(&bytes));
        if actual != art.sha256 || bytes.len() as u64 != art.size {
            return Err(SymbolsError::InputAltered {
                name,
                expected: art.sha256.clone(),
                actual,
            });
        }
        Ok(bytes)
    };
    let inputs = InputBytes {
        btf: read(names::BTF)?,
        kallsyms: read(names::KALLSYMS)?,
        vmcoreinfo: read(names::VMCOREINFO)?,
        banner: read(names::BANNER)?,
    };
    Ok((inputs, airf_isf::table::input(&loc.name(), &raw)))
}

/// Stores one object of a table: a local file (kept when it already holds these bytes), or an
/// S3 object written only if absent, as all evidence is.
pub fn put(
    target: &Location,
    bytes: Vec<u8>,
    content_type: &str,
    s3: Option<(&Client, &Handle)>,
) -> Result<(), String> {
    match target {
        Location::File(path) => {
            if let Ok(have) = std::fs::read(path) {
                if have == bytes {
                    return Ok(());
                }
                return Err(format!(
                    "{} already exists with other content; remove it or choose --out",
                    path.display()
                ));
            }
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            }
            crate::sink::local::write_atomic(path, &bytes).map_err(|e| e.to_string())
        }
        Location::S3 { bucket, key } => {
            let (client, rt) = s3.ok_or("internal: no S3 client")?;
            crate::sink::s3::put_small(client, rt, bucket, key, bytes, content_type, None)
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    }
}
