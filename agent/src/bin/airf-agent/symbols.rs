//! `airf-agent symbols`: build the Volatility symbol table of a stored memory image from the
//! BTF, kallsyms, VMCOREINFO and banner stored beside it, and store it there too.

use std::path::PathBuf;

use airf_agent::report::exit;
use airf_agent::symbols::{self, BuiltTable, SymbolsError};
use airf_agent::verify::Location;
use airf_evidence::symbols::names;
use clap::Args;
use serde::Serialize;

use crate::common::{self, OutputArgs, S3Args};

#[derive(Debug, Args)]
pub struct SymbolsArgs {
    /// The memory manifest (s3://BUCKET/KEY/memory.manifest.json or a path), or the evidence
    /// folder that holds it.
    #[arg(value_name = "MANIFEST_OR_FOLDER")]
    pub manifest: String,
    /// Write the table into this local directory instead of beside the image.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub s3: S3Args,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// The JSON result.
#[derive(Debug, Serialize)]
struct SymbolsResult {
    command: &'static str,
    status: &'static str,
    memory_manifest: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    table: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    table_manifest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary: Option<airf_evidence::symbols::TableSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    duration_seconds: f64,
}

/// The manifest a folder argument means: `memory.manifest.json` inside it.
pub fn manifest_location(arg: &str) -> Result<Location, String> {
    let is_folder = if arg.starts_with("s3://") {
        !arg.ends_with(".manifest.json")
    } else {
        std::path::Path::new(arg).is_dir()
    };
    let arg = if is_folder {
        format!("{}/memory.manifest.json", arg.trim_end_matches('/'))
    } else {
        arg.to_owned()
    };
    Location::parse(&arg)
}

/// Stores the table: in `out`, or beside the manifest. Returns the two locations.
fn store(
    built: BuiltTable,
    beside: &Location,
    out: Option<&PathBuf>,
    s3: Option<(&aws_sdk_s3::Client, &tokio::runtime::Handle)>,
) -> Result<(String, String), SymbolsError> {
    let manifest = symbols::manifest_bytes(&built.manifest);
    let files = [
        (names::TABLE, built.xz, "application/x-xz"),
        (names::TABLE_MANIFEST, manifest, "application/json"),
    ];
    let mut stored = Vec::new();
    for (name, bytes, content_type) in files {
        let target = match out {
            Some(dir) => Location::File(dir.join(name)),
            None => beside.sibling(name),
        };
        symbols::put(&target, bytes, content_type, s3)
            .map_err(|why| SymbolsError::Store { name, why })?;
        stored.push(target.display());
    }
    let [table, manifest] = <[String; 2]>::try_from(stored).map_err(|_| SymbolsError::Store {
        name: names::TABLE,
        why: "internal: two objects expected".into(),
    })?;
    Ok((table, manifest))
}

pub fn run(args: SymbolsArgs) -> i32 {
    let json = args.output.json_wanted();
    let started = std::time::Instant::now();
    let loc = match manifest_location(&args.manifest) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("airf-agent: error: {e}");
            return exit::USAGE;
        }
    };
    let rt = match common::runtime_or_exit() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let client = common::s3_client_for(&loc, &rt, &args.s3);
    let s3 = client.as_ref().map(|c| (c, rt.handle()));
    let outcome = symbols::read_inputs(&loc, s3).and_then(|(inputs, manifest)| {
        if !json && !args.output.no_progress {
            eprintln!(
                "airf-agent: building the symbol table from {}",
                loc.display()
            );
        }
        let built = symbols::build(&inputs, Some(manifest), "airf-agent symbols")?;
        let summary = built.manifest.summary.clone();
        let (table, table_manifest) = store(built, &loc, args.out.as_ref(), s3)?;
        Ok((summary, table, table_manifest))
    });
    let mut result = SymbolsResult {
        command: "symbols",
        status: "complete",
        memory_manifest: loc.display(),
        table: None,
        table_manifest: None,
        summary: None,
        error: None,
        duration_seconds: 0.0,
    };
    let code = match outcome {
        Ok((summary, table, table_manifest)) => {
            result.table = Some(table);
            result.table_manifest = Some(table_manifest);
            result.summary = Some(summary);
            exit::OK
        }
        Err(e) => {
            eprintln!("airf-agent: error: {e}");
            result.status = "failed";
            result.error = Some(e.to_string());
            exit::FAILED
        }
    };
    result.duration_seconds = started.elapsed().as_secs_f64();
    let human = match (&result.summary, &result.table) {
        (Some(s), Some(t)) => format!(
            "symbol table for Linux {}: {} types, {} enums, {} symbols ({} typed) in {:.1} s\n  {t}\nOpen the image with Volatility 3: vol -s <folder of the table> -f memory.lime linux.pslist\n(`airf-agent fetch {}` downloads, checks and unpacks everything and prints the exact command)",
            s.kernel_release,
            s.user_types + s.base_types,
            s.enums,
            s.symbols,
            s.typed_symbols,
            result.duration_seconds,
            result.memory_manifest
        ),
        _ => "no symbol table was made".to_owned(),
    };
    common::emit(&result, &human, json, false);
    code
}
