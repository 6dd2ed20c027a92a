//! `airf-agent fetch`: copy a stored memory image with its artifacts and symbol table to this
//! machine, verify it, unpack it, and print the Volatility 3 command that opens it.

use std::path::PathBuf;

use airf_agent::fetch::{FetchError, FetchOptions, fetch};
use airf_agent::report::exit;
use clap::Args;

use crate::common::{self, OutputArgs, S3Args};
use crate::symbols::manifest_location;

#[derive(Debug, Args)]
pub struct FetchArgs {
    /// The memory manifest (s3://BUCKET/KEY/memory.manifest.json or a path), or the evidence
    /// folder that holds it.
    #[arg(value_name = "MANIFEST_OR_FOLDER")]
    pub manifest: String,
    /// Local directory to copy into (the <case>/<host>/<run>/ folders are kept below it).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub to: PathBuf,
    /// Keep only the seekable memory.lime.zst (open it with the airf Volatility layer, `vol -p`).
    #[arg(long)]
    pub keep_compressed: bool,
    /// Where the airf Volatility plugins are, for the printed command (with --keep-compressed).
    #[arg(long, value_name = "DIR", env = "AIRF_VOLATILITY_PLUGINS")]
    pub volatility_plugins: Option<PathBuf>,
    #[command(flatten)]
    pub s3: S3Args,
    #[command(flatten)]
    pub output: OutputArgs,
}

pub fn run(args: FetchArgs) -> i32 {
    let json = args.output.json_wanted();
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
    let opts = FetchOptions {
        keep_compressed: args.keep_compressed,
        volatility_plugins: args.volatility_plugins.clone(),
    };
    if !json && !args.output.no_progress {
        eprintln!(
            "airf-agent: fetching {} into {}",
            loc.display(),
            args.to.display()
        );
    }
    match fetch(
        &loc,
        &args.to,
        client.as_ref().map(|c| (c, rt.handle())),
        &opts,
    ) {
        Ok(f) => {
            let mut human = format!("copied and verified (INTACT): {}\n", f.folder.display());
            match (&f.symbol_table, &f.no_symbol_table) {
                (Some(t), _) => human.push_str(&format!(
                    "symbol table ({}): {}\n",
                    f.symbol_table_origin.unwrap_or("stored"),
                    t.display()
                )),
                (None, Some(why)) => human.push_str(&format!("no symbol table: {why}\n")),
                (None, None) => {}
            }
            human.push_str(&format!(
                "\nOpen it with Volatility 3:\n  {}\n",
                f.vol_command
            ));
            common::emit(&f, &human, json, false);
            exit::OK
        }
        Err(e) => {
            eprintln!("airf-agent: error: {e}");
            let code = match e {
                FetchError::NotIntact(_) | FetchError::TableMismatch(_) => exit::NOT_INTACT,
                _ => exit::FAILED,
            };
            let result =
                serde_json::json!({"command": "fetch", "status": "failed", "error": e.to_string()});
            common::emit(&result, "", json, false);
            code
        }
    }
}
