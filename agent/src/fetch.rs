//! The analyst's path: copy a stored memory image, its artifacts and its symbol table to a local
//! folder, verify them, unpack the image, and say the exact Volatility command.
//!
//! The copy keeps the `<case>/<host>/<run>/` folders, so `verify` checks its place as it would
//! in the bucket. The table goes into `symbols/` beside the image (Volatility reads every ISF
//! under a `-s` folder, and the evidence folder holds other JSON).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use airf_evidence::memory::MemoryFacts;
use airf_evidence::symbols::{SymbolTableManifest, names};
use aws_sdk_s3::Client;
use tokio::runtime::Handle;

use crate::hash::Sha256;
use crate::manifest::SourceFacts;
use crate::verify::store::{Location, ReadError, open, read_small};
use crate::verify::{Verdict, VerifyOptions, VerifyReport, location, verify_with};

/// Why a fetch stopped.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0}")]
    Read(#[from] ReadError),
    #[error("{0}")]
    Manifest(String),
    #[error("writing {path}: {why}")]
    Write { path: String, why: String },
    #[error("the copy is NOT INTACT: {}", .0.message)]
    NotIntact(Box<VerifyReport>),
    #[error("the symbol table does not belong to this image: {0}")]
    TableMismatch(String),
}

/// What was fetched.
#[derive(Debug, serde::Serialize)]
pub struct Fetched {
    /// The local evidence folder.
    pub folder: PathBuf,
    /// The local manifest.
    pub manifest: PathBuf,
    /// The stored (compressed) image.
    pub image: PathBuf,
    /// The decompressed LiME image, unless kept compressed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unpacked: Option<PathBuf>,
    /// The symbol table, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symbol_table: Option<PathBuf>,
    /// Where the table came from: `stored` (beside the image) or `built` (here, from the
    /// stored artifacts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symbol_table_origin: Option<&'static str>,
    /// Why there is no table.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_symbol_table: Option<String>,
    /// The verify verdict of the local copy.
    pub verified: String,
    /// The Volatility 3 command to run.
    pub vol_command: String,
}

fn write_err(path: &Path, e: impl std::fmt::Display) -> FetchError {
    FetchError::Write {
        path: path.display().to_string(),
        why: e.to_string(),
    }
}

/// Copies one object to `to` (through a `.part` file, so a cut copy never looks whole).
fn copy(from: &Location, to: &Path, s3: Option<(&Client, &Handle)>) -> Result<(), FetchError> {
    let mut reader = open(from, s3, None)?;
    let part = to.with_extension("part");
    let mut file = std::fs::File::create(&part).map_err(|e| write_err(&part, e))?;
    std::io::copy(&mut reader, &mut file).map_err(|e| write_err(&part, e))?;
    file.sync_all().map_err(|e| write_err(&part, e))?;
    std::fs::rename(&part, to).map_err(|e| write_err(to, e))
}

/// Decompresses the image into `to`, checking the raw SHA-256 the manifest recorded.
fn unpack(image: &Path, to: &Path, raw_sha256: &str) -> Result<(), FetchError> {
    let input = std::fs::File::open(image).map_err(|e| write_err(image, e))?;
    let mut dec = zstd::stream::read::Decoder::new(input).map_err(|e| write_err(image, e))?;
    let part = to.with_extension("part");
    let mut out = std::fs::File::create(&part).map_err(|e| write_err(&part, e))?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = dec.read(&mut buf).map_err(|e| write_err(image, e))?;
        let Some(chunk) = buf.get(..n).filter(|c| !c.is_empty()) else {
            break;
        };
        hash.update(chunk);
        out.write_all(chunk).map_err(|e| write_err(&part, e))?;
    }
    let actual = hex::encode(hash.finalize());
    if actual != raw_sha256 {
        let _ = std::fs::remove_file(&part);
        return Err(FetchError::Manifest(format!(
            "{} decompresses to SHA-256 {actual}, the manifest says {raw_sha256}",
            image.display()
        )));
    }
    out.sync_all().map_err(|e| write_err(&part, e))?;
    std::fs::rename(&part, to).map_err(|e| write_err(to, e))
}

/// Options of [`fetch`].
#[derive(Debug, Clone, Default)]
pub struct FetchOptions {
    /// Keep only `memory.lime.zst` (for the seekable-zstd Volatility layer).
    pub keep_compressed: bool,
    /// Where the airf Volatility plugins are (`vol -p`), for the command printed with
    /// `keep_compressed`.
    pub volatility_plugins: Option<PathBuf>,
}

/// Fetches the memory evidence behind `manifest_loc` into `dir`.
pub fn fetch(
    manifest_loc: &Location,
    dir: &Path,
    s3: Option<(&Client, &Handle)>,
    opts: &FetchOptions,
) -> Result<Fetched, FetchError> {
    let raw = read_small(manifest_loc, s3)?;
    let manifest = crate::manifest::parse(&raw).map_err(|e| {
        FetchError::Manifest(format!("{} is not a manifest: {e}", manifest_loc.display()))
    })?;
    let SourceFacts::Memory(facts) = &manifest.source else {
        return Err(FetchError::Manifest(format!(
            "{} is {} evidence; fetch prepares memory images for Volatility",
            manifest_loc.display(),
            manifest.kind
        )));
    };
    let found = manifest_loc.display();
    let tail = location::evidence_tail(&found);
    let folder = match tail {
        Some([case, host, run, _]) => dir.join(case).join(host).join(run),
        None => dir.join("evidence"),
    };
    std::fs::create_dir_all(&folder).map_err(|e| write_err(&folder, e))?;
    let local = |name: &str| folder.join(name);
    let manifest_name = manifest_loc.name();
    std::fs::write(local(&manifest_name), &raw)
        .map_err(|e| write_err(&local(&manifest_name), e))?;
    let image_name = location::image_name(&manifest);
    copy(&manifest_loc.sibling(&image_name), &local(&image_name), s3)?;
    for art in &facts.artifacts {
        copy(&manifest_loc.sibling(&art.name), &local(&art.name), s3)?;
    }
    let sig = airf_evidence::custody::signature_name(&manifest_name);
    match copy(&manifest_loc.sibling(&sig), &local(&sig), s3) {
        Ok(()) | Err(FetchError::Read(ReadError::NotFound(_))) => {}
        Err(e) => return Err(e),
    }

    let local_manifest = Location::File(local(&manifest_name));
    let report = verify_with(
        &local_manifest,
        None,
        &VerifyOptions {
            relocated: tail.is_none(),
            ..VerifyOptions::default()
        },
    );
    if report.status != Verdict::Intact {
        return Err(FetchError::NotIntact(Box::new(report)));
    }

    let symbols_dir = folder.join("symbols");
    std::fs::create_dir_all(&symbols_dir).map_err(|e| write_err(&symbols_dir, e))?;
    let table_path = symbols_dir.join(names::TABLE);
    let (table, origin, no_table) =
        match fetch_table(manifest_loc, &local_manifest, &table_path, facts, s3)? {
            Ok(origin) => (Some(table_path), Some(origin), None),
            Err(why) => (None, None, Some(why)),
        };

    let image = local(&image_name);
    let unpacked = if opts.keep_compressed {
        None
    } else {
        let to = local(image_name.trim_end_matches(".zst"));
        unpack(&image, &to, &manifest.raw.sha256)?;
        Some(to)
    };
    let vol_command = vol_command(&folder, table.is_some(), unpacked.as_deref(), &image, opts);
    let manifest = local(&manifest_name);
    Ok(Fetched {
        folder,
        manifest,
        image,
        unpacked,
        symbol_table: table,
        symbol_table_origin: origin,
        no_symbol_table: no_table,
        verified: "intact".into(),
        vol_command,
    })
}

/// The stored table when there is one (checked against its manifest and the image's
/// artifacts), else one built here. The inner error says why there is none.
fn fetch_table(
    remote_manifest: &Location,
    local_manifest: &Location,
    table_path: &Path,
    facts: &MemoryFacts,
    s3: Option<(&Client, &Handle)>,
) -> Result<Result<&'static str, String>, FetchError> {
    match read_small(&remote_manifest.sibling(names::TABLE_MANIFEST), s3) {
        Ok(bytes) => {
            let tm: SymbolTableManifest = serde_json::from_slice(&bytes).map_err(|e| {
                FetchError::TableMismatch(format!(
                    "{} is not a table manifest: {e}",
                    names::TABLE_MANIFEST
                ))
            })?;
            check_table_inputs(&tm, local_manifest, facts)?;
            copy(&remote_manifest.sibling(names::TABLE), table_path, s3)?;
            let xz = std::fs::read(table_path).map_err(|e| write_err(table_path, e))?;
            let actual = hex::encode(Sha256::digest(&xz));
            if actual != tm.sha256 {
                return Err(FetchError::TableMismatch(format!(
                    "{} has SHA-256 {actual}, its manifest says {}",
                    names::TABLE,
                    tm.sha256
                )));
            }
            std::fs::write(table_path.with_file_name(names::TABLE_MANIFEST), &bytes)
                .map_err(|e| write_err(table_path, e))?;
            Ok(Ok("stored"))
        }
        Err(ReadError::NotFound(_)) => {
            let built =
                crate::symbols::read_inputs(local_manifest, None).and_then(|(inputs, m)| {
                    crate::symbols::build(&inputs, Some(m), "airf-agent fetch")
                        .map_err(crate::symbols::SymbolsError::from)
                });
            match built {
                Ok(b) => {
                    std::fs::write(table_path, &b.xz).map_err(|e| write_err(table_path, e))?;
                    std::fs::write(
                        table_path.with_file_name(names::TABLE_MANIFEST),
                        crate::symbols::manifest_bytes(&b.manifest),
                    )
                    .map_err(|e| write_err(table_path, e))?;
                    Ok(Ok("built"))
                }
                Err(e) => Ok(Err(e.to_string())),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// A stored table must have been built from this image's artifacts.
fn check_table_inputs(
    tm: &SymbolTableManifest,
    local_manifest: &Location,
    facts: &MemoryFacts,
) -> Result<(), FetchError> {
    for input in &tm.inputs {
        let recorded = facts.artifacts.iter().find(|a| a.name == input.name);
        if recorded.map(|a| a.sha256.as_str()) != Some(input.sha256.as_str()) {
            return Err(FetchError::TableMismatch(format!(
                "it was built from a {} with SHA-256 {}, and {} records {}",
                input.name,
                input.sha256,
                local_manifest.display(),
                recorded.map_or("none", |a| a.sha256.as_str())
            )));
        }
    }
    Ok(())
}

fn vol_command(
    folder: &Path,
    table: bool,
    unpacked: Option<&Path>,
    image: &Path,
    opts: &FetchOptions,
) -> String {
    let mut cmd = String::from("vol");
    if unpacked.is_none() {
        let plugins = opts.volatility_plugins.as_ref().map_or_else(
            || "<airf>/packaging/volatility".to_owned(),
            |p| p.display().to_string(),
        );
        cmd.push_str(&format!(" -p {plugins}"));
    }
    if table {
        cmd.push_str(&format!(" -s {}", folder.join("symbols").display()));
    }
    cmd.push_str(&format!(
        " -f {} {}",
        unpacked.unwrap_or(image).display(),
        if table {
            "linux.pslist"
        } else {
            "banners.Banners"
        }
    ));
    cmd
}
