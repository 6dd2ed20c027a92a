//! `symbols`: a Volatility 3 symbol table for every memory image `verify` checked in this
//! execution, built here, in the Lambda, with `airf-isf` from the four inputs the capture stored
//! beside the image (BTF, kallsyms, VMCOREINFO and the `/proc/version` banner), and stored beside
//! it as `memory.isf.json.xz` with its manifest `memory.isf.manifest.json`.
//!
//! Why a step of its own, after containment: a real kernel's table takes seconds of CPU and is
//! for the analyst, later. Containment never waits for it, and its failure never fails the case
//! (the workflow catches it and records it in the instance's result). Why in the Lambda rather
//! than on the instance (`airf-agent memory --symbols` can build it there): the instance is the
//! suspect, and its CPU and minutes belong to the acquisition.
//!
//! Each input is read back and checked against the size and SHA-256 the memory manifest lists,
//! and the manifest against what `verify` checked: a difference is evidence altered since, an
//! error naming the object. A capture that could not store all four inputs (a kernel without
//! BTF, kallsyms with its addresses hidden, ...) is no error of the case: its outcome says
//! `no_symbol_table` and why, in the manifest's own words (`symbol_inputs.problems`), and so does
//! the notification.
//!
//! Tables are stored as all evidence is, with If-None-Match: never replaced. One already there
//! (a retried step, or the agent's `memory --symbols` at capture time) is kept when its manifest
//! names the same inputs and the table matches it.

use crate::cloud::{Cloud, PutNew};
use crate::config::Config;
use crate::custody::{JSON, s3_uri, sha256_hex};
use crate::error::{Error, Kind, Result};
use crate::model::{Subject, Verified};
use crate::notify::notify;
use airf_evidence::EvidenceKind;
use airf_evidence::manifest::SourceFacts;
use airf_evidence::memory::{Artifact, MemoryFacts};
use airf_evidence::symbols::{SymbolTableManifest, TableInput, names};
use airf_isf::table::{BuiltTable, InputBytes};
use serde::{Deserialize, Serialize};

/// The largest input read back: the agent stores at most 64 MiB of each artifact.
pub const MAX_INPUT_BYTES: u64 = 64 << 20;
/// The largest table read back (a real kernel's `.json.xz` is a few MiB).
pub const MAX_TABLE_BYTES: u64 = 64 << 20;
/// The table's content type.
pub const XZ: &str = "application/x-xz";

/// What became of one memory image, as the instance's entry of the execution's output carries
/// it: kept small (an execution's output lists every instance of a fleet, 256 KiB in all). The
/// table's manifest and the memory manifest are beside the table, under their fixed names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ImageSymbols {
    /// The table, beside the image.
    Stored {
        /// `s3://…/memory.isf.json.xz`.
        table: String,
        /// The kernel it describes (VMCOREINFO `OSRELEASE`).
        kernel_release: String,
        /// An earlier attempt of this step, or the agent at capture time, had stored it.
        existing: bool,
    },
    /// The capture's inputs cannot make a table, and why.
    NoTable {
        /// `s3://…/memory.manifest.json` of the image.
        manifest: String,
        /// Plain words, for the responder.
        no_symbol_table: String,
    },
}

/// The step's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SymbolsOutcome {
    /// One per memory image, in `verify`'s order; empty when no memory was acquired.
    pub images: Vec<ImageSymbols>,
}

/// Builds and stores the table of every memory image among `artifacts` (what `verify` checked),
/// then tells the responders where each is, or why there is none. A failure that is not
/// transient (evidence altered, a table of other inputs in the way) is notified too, then
/// returned.
pub async fn symbols<C: Cloud>(
    cloud: &C,
    config: &Config,
    case_id: &str,
    subject: &Subject,
    artifacts: &[Verified],
    execution_arn: &str,
) -> Result<SymbolsOutcome> {
    let made_by = format!(
        "airf-controller {} (execution {execution_arn})",
        env!("CARGO_PKG_VERSION")
    );
    let mut images = Vec::new();
    let mut told = Vec::new();
    for artifact in artifacts.iter().filter(|a| a.kind == EvidenceKind::Memory) {
        match image_symbols(cloud, config, case_id, subject, artifact, &made_by).await {
            Ok(image) => {
                told.push((artifact.manifest.as_str(), image.clone()));
                images.push(image);
            }
            Err(e) if e.kind() == Kind::Transient => return Err(e),
            Err(e) => {
                let body = format!(
                    "The symbol table of memory image {} was NOT built:\n{e}\n\nThe instance's \
                     containment is not affected; this concerns the analysis of its memory.",
                    artifact.manifest
                );
                if let Err(n) = notify(
                    cloud,
                    config,
                    case_id,
                    &subject.target,
                    "symbol table NOT built",
                    &body,
                )
                .await
                {
                    tracing::warn!("notifying the symbols failure: {n}");
                }
                return Err(e);
            }
        }
    }
    if !told.is_empty() {
        let (title, body) = message(&told);
        notify(cloud, config, case_id, &subject.target, title, &body).await?;
    }
    Ok(SymbolsOutcome { images })
}

/// The notification: the title, and one paragraph per image (its memory manifest and what
/// became of it).
pub fn message(images: &[(&str, ImageSymbols)]) -> (&'static str, String) {
    let all = images
        .iter()
        .all(|(_, i)| matches!(i, ImageSymbols::Stored { .. }));
    let title = if all {
        "symbol table stored"
    } else {
        "NO symbol table"
    };
    let paragraphs: Vec<String> = images
        .iter()
        .map(|(manifest, i)| match i {
            ImageSymbols::Stored {
                table,
                kernel_release,
                ..
            } => format!(
                "Memory image {manifest}\nsymbol table: {table} (Linux {kernel_release})\nTo \
                 open the image with Volatility 3: airf-agent fetch {manifest}"
            ),
            ImageSymbols::NoTable {
                no_symbol_table, ..
            } => format!("Memory image {manifest}\nno symbol table: {no_symbol_table}"),
        })
        .collect();
    (title, paragraphs.join("\n\n"))
}

/// The bucket, folder and key of a memory manifest `verify` names, checked to be a
/// `*.manifest.json` in this case's folder of the evidence bucket.
pub fn manifest_location(
    config: &Config,
    case_id: &str,
    subject: &Subject,
    uri: &str,
) -> Result<(String, String, String), String> {
    let (bucket, key) = uri
        .strip_prefix("s3://")
        .and_then(|rest| rest.split_once('/'))
        .ok_or_else(|| format!("{uri:?} is not an s3://bucket/key address"))?;
    if bucket != config.evidence_bucket {
        return Err(format!(
            "{uri} is not in the evidence bucket {}",
            config.evidence_bucket
        ));
    }
    let prefix = if config.evidence_prefix.is_empty() {
        String::new()
    } else {
        format!("{}/", config.evidence_prefix)
    };
    let case_folder = format!("{prefix}{case_id}/{}/", subject.target.instance_id);
    let folder = key
        .rsplit_once('/')
        .map(|(folder, _)| folder)
        .filter(|_| key.starts_with(&case_folder) && key.ends_with(".manifest.json"))
        .filter(|_| !key.split('/').any(|part| part.is_empty() || part == ".."))
        .ok_or_else(|| format!("{uri} is not a manifest in this case's folder {case_folder}"))?;
    Ok((bucket.to_owned(), folder.to_owned(), key.to_owned()))
}

/// The four inputs' entries in the manifest, in [`InputBytes`]' order, or why the capture
/// cannot have a table: the manifest's own words when it says its inputs are incomplete.
pub fn planned_inputs(facts: &MemoryFacts) -> Result<[&Artifact; 4], String> {
    let Some(inputs) = &facts.symbol_inputs else {
        return Err(
            "the capture recorded no symbol inputs (an agent older than symbol \
                    tables): build the table from the kernel's debug package with dwarf2json"
                .into(),
        );
    };
    if !inputs.complete {
        return Err(if inputs.problems.is_empty() {
            "the capture says its symbol inputs are incomplete".to_owned()
        } else {
            inputs.problems.join("; ")
        });
    }
    let find = |name: &str| {
        facts
            .artifacts
            .iter()
            .find(|a| a.name == name)
            .ok_or_else(|| {
                let why = facts
                    .artifacts_missing
                    .iter()
                    .find(|m| m.name == name)
                    .map_or_else(
                        || "it is not listed".to_owned(),
                        |m| format!("{}: {}", m.origin, m.cause),
                    );
                format!("the capture did not store {name} ({why})")
            })
    };
    Ok([
        find(names::BTF)?,
        find(names::KALLSYMS)?,
        find(names::VMCOREINFO)?,
        find(names::BANNER)?,
    ])
}

/// The entry a table's manifest records for an input, from the memory manifest's entry.
fn table_input(a: &Artifact) -> TableInput {
    TableInput {
        name: a.name.clone(),
        size: a.size,
        sha256: a.sha256.clone(),
    }
}

/// "Evidence altered": the object and what differs.
fn altered(uri: &str, what: &str) -> Error {
    Error::failed(format!(
        "evidence altered: {uri} {what}; the evidence folder changed after it was captured and \
         verified: run `airf-agent verify` on its manifest"
    ))
}

/// Checks an input's bytes against the memory manifest's entry.
pub fn check_input(uri: &str, expected: &Artifact, bytes: &[u8]) -> Result<()> {
    let sha256 = sha256_hex(bytes);
    if bytes.len() as u64 != expected.size || sha256 != expected.sha256 {
        return Err(altered(
            uri,
            &format!(
                "is {} bytes with SHA-256 {sha256}, the memory manifest says {} bytes with \
                 SHA-256 {}",
                bytes.len(),
                expected.size,
                expected.sha256
            ),
        ));
    }
    Ok(())
}

/// What one image ends with.
async fn image_symbols<C: Cloud>(
    cloud: &C,
    config: &Config,
    case_id: &str,
    subject: &Subject,
    verified: &Verified,
    made_by: &str,
) -> Result<ImageSymbols> {
    let (bucket, folder, key) = manifest_location(config, case_id, subject, &verified.manifest)
        .map_err(Error::bad_input)?;
    let uri = s3_uri(&bucket, &key);
    let stored = cloud
        .get_object(&bucket, &key)
        .await?
        .ok_or_else(|| altered(&uri, "is missing"))?;
    let manifest = super::verify::parse_manifest(&stored.bytes)
        .map_err(|e| altered(&uri, &format!("is no longer a readable manifest ({e})")))?;
    if manifest.raw.sha256 != verified.raw_sha256
        || manifest.compressed.sha256 != verified.compressed_sha256
    {
        return Err(altered(
            &uri,
            "records other image hashes than the ones verify checked",
        ));
    }
    let SourceFacts::Memory(facts) = &manifest.source else {
        return Err(Error::failed(format!(
            "{uri} records {} evidence, not memory",
            manifest.kind
        )));
    };
    let planned = match planned_inputs(facts) {
        Ok(p) => p,
        Err(why) => {
            return Ok(ImageSymbols::NoTable {
                manifest: verified.manifest.clone(),
                no_symbol_table: why,
            });
        }
    };
    let expected: Vec<TableInput> = planned.iter().map(|a| table_input(a)).collect();
    let object = |name: &str| format!("{folder}/{name}");
    let table_key = object(names::TABLE);
    let table_manifest_key = object(names::TABLE_MANIFEST);
    let stored_outcome = |kernel_release: String, existing: bool| ImageSymbols::Stored {
        table: s3_uri(&bucket, &table_key),
        kernel_release,
        existing,
    };

    // A table stored already (a retry, or the agent at capture time): kept if it is of these
    // inputs and whole.
    if let Some(earlier) = stored_table(cloud, &bucket, &table_manifest_key, &expected).await? {
        check_table(cloud, &bucket, &table_key, &earlier).await?;
        return Ok(stored_outcome(earlier.summary.kernel_release, true));
    }

    let mut bytes = Vec::with_capacity(4);
    for artifact in planned {
        let key = object(&artifact.name);
        let uri = s3_uri(&bucket, &key);
        let read = cloud
            .get_object_up_to(&bucket, &key, MAX_INPUT_BYTES)
            .await?
            .ok_or_else(|| altered(&uri, "is listed in the memory manifest but missing"))?;
        check_input(&uri, artifact, &read.bytes)?;
        bytes.push(read.bytes);
    }
    let [btf, kallsyms, vmcoreinfo, banner]: [Vec<u8>; 4] = bytes
        .try_into()
        .map_err(|_| Error::failed("internal: not four symbol inputs"))?;
    let inputs = InputBytes {
        btf,
        kallsyms,
        vmcoreinfo,
        banner,
    };
    let memory_manifest = TableInput {
        name: key.rsplit('/').next().unwrap_or(&key).to_owned(),
        size: stored.bytes.len() as u64,
        sha256: sha256_hex(&stored.bytes),
    };
    let built = match build(inputs, memory_manifest, made_by).await? {
        Ok(built) => built,
        Err(why) => {
            return Ok(ImageSymbols::NoTable {
                manifest: verified.manifest.clone(),
                no_symbol_table: why,
            });
        }
    };
    tracing::info!(
        table = %s3_uri(&bucket, &table_key),
        seconds = built.manifest.duration_seconds,
        bytes = built.xz.len(),
        "symbol table built"
    );
    let kernel_release = built.manifest.summary.kernel_release.clone();
    let table_existed = put_table(cloud, config, &bucket, &table_key, &built).await?;
    let manifest_existed =
        put_table_manifest(cloud, config, &bucket, &table_manifest_key, &built.manifest).await?;
    Ok(stored_outcome(
        kernel_release,
        table_existed && manifest_existed,
    ))
}

/// Builds the table on the blocking pool (seconds of CPU); the inner error is why the inputs
/// make no table, in `airf-isf`'s words.
async fn build(
    inputs: InputBytes,
    memory_manifest: TableInput,
    made_by: &str,
) -> Result<std::result::Result<BuiltTable, String>> {
    let made_by = made_by.to_owned();
    tokio::task::spawn_blocking(move || {
        airf_isf::table::build(&inputs, Some(memory_manifest), &made_by).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| Error::failed(format!("building the symbol table stopped: {e}")))
}

/// The table manifest already at `key`, if any, when it is of the `expected` inputs; another
/// table's is an error (a table is never replaced).
async fn stored_table<C: Cloud>(
    cloud: &C,
    bucket: &str,
    key: &str,
    expected: &[TableInput],
) -> Result<Option<SymbolTableManifest>> {
    let Some(earlier) = cloud.get_object(bucket, key).await? else {
        return Ok(None);
    };
    let uri = s3_uri(bucket, key);
    let earlier: SymbolTableManifest = serde_json::from_slice(&earlier.bytes).map_err(|e| {
        Error::failed(format!(
            "{uri} exists and is not a symbol table manifest airf can read ({e}); a table is \
             never replaced"
        ))
    })?;
    if earlier.inputs != expected {
        return Err(Error::failed(format!(
            "{uri} already describes a table of other inputs than the ones the memory manifest \
             lists ({}); a table is never replaced",
            earlier
                .inputs
                .iter()
                .map(|i| format!("{} {}", i.name, i.sha256))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(Some(earlier))
}

/// Checks that the table at `key` is the one `manifest` describes.
async fn check_table<C: Cloud>(
    cloud: &C,
    bucket: &str,
    key: &str,
    manifest: &SymbolTableManifest,
) -> Result<()> {
    let uri = s3_uri(bucket, key);
    let table = cloud
        .get_object_up_to(bucket, key, MAX_TABLE_BYTES)
        .await?
        .ok_or_else(|| altered(&uri, "is missing, yet its manifest is there"))?;
    let sha256 = sha256_hex(&table.bytes);
    if sha256 != manifest.sha256 || table.bytes.len() as u64 != manifest.size {
        return Err(altered(
            &uri,
            &format!(
                "is {} bytes with SHA-256 {sha256}, its manifest says {} bytes with SHA-256 {}",
                table.bytes.len(),
                manifest.size,
                manifest.sha256
            ),
        ));
    }
    Ok(())
}

/// The 409 of a conditional write that raced another.
fn conflict(bucket: &str, key: &str) -> Error {
    Error::Aws {
        operation: "s3:PutObject",
        message: format!("s3://{bucket}/{key}: another write of it was in flight (409)"),
        retryable: true,
    }
}

/// Stores the table; true when the same bytes were there already.
async fn put_table<C: Cloud>(
    cloud: &C,
    config: &Config,
    bucket: &str,
    key: &str,
    built: &BuiltTable,
) -> Result<bool> {
    match cloud
        .put_new_object(bucket, key, &built.xz, XZ, &config.kms_key_id)
        .await?
    {
        PutNew::Created => Ok(false),
        PutNew::Conflict => Err(conflict(bucket, key)),
        PutNew::Exists => {
            let earlier = cloud
                .get_object_up_to(bucket, key, MAX_TABLE_BYTES)
                .await?
                .ok_or_else(|| Error::Aws {
                    operation: "s3:GetObject",
                    message: format!("s3://{bucket}/{key} exists (412) but cannot be read yet"),
                    retryable: true,
                })?;
            if earlier.bytes == built.xz {
                Ok(true)
            } else {
                Err(Error::failed(format!(
                    "s3://{bucket}/{key} already holds another table (SHA-256 {}, this one {}) \
                     and no manifest says what it is; a table is never replaced",
                    sha256_hex(&earlier.bytes),
                    built.manifest.sha256
                )))
            }
        }
    }
}

/// Stores the table's manifest; true when one of the same table and inputs was there already.
async fn put_table_manifest<C: Cloud>(
    cloud: &C,
    config: &Config,
    bucket: &str,
    key: &str,
    manifest: &SymbolTableManifest,
) -> Result<bool> {
    // As airf_isf::table::manifest_bytes writes it (pretty, a final newline), with the error
    // kept: an empty manifest must never be stored.
    let mut body = serde_json::to_vec_pretty(manifest)
        .map_err(|e| Error::failed(format!("serializing the table's manifest: {e}")))?;
    body.push(b'\n');
    match cloud
        .put_new_object(bucket, key, &body, JSON, &config.kms_key_id)
        .await?
    {
        PutNew::Created => Ok(false),
        PutNew::Conflict => Err(conflict(bucket, key)),
        PutNew::Exists => {
            let Some(earlier) = stored_table(cloud, bucket, key, &manifest.inputs).await? else {
                return Err(Error::Aws {
                    operation: "s3:GetObject",
                    message: format!("s3://{bucket}/{key} exists (412) but cannot be read yet"),
                    retryable: true,
                });
            };
            if earlier.sha256 == manifest.sha256 {
                Ok(true)
            } else {
                Err(Error::failed(format!(
                    "s3://{bucket}/{key} already describes another table (SHA-256 {}) than the \
                     one stored beside it ({}); a table is never replaced",
                    earlier.sha256, manifest.sha256
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests;
