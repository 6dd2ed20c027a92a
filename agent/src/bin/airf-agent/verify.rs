//! `airf-agent verify`: check stored evidence against its manifest.

use airf_agent::report::exit;
use airf_agent::verify::{Location, Verdict, verify};
use clap::Args;

use crate::common::{self, OutputArgs, S3Args};

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The manifest: s3://BUCKET/KEY.manifest.json or a local path. The image is read from the
    /// same folder.
    #[arg(value_name = "MANIFEST")]
    pub manifest: String,
    #[command(flatten)]
    pub s3: S3Args,
    #[command(flatten)]
    pub output: OutputArgs,
}

pub fn run(args: VerifyArgs) -> i32 {
    let json = args.output.json_wanted();
    let loc = match Location::parse(&args.manifest) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("airf-agent: error: {e}");
            return exit::USAGE;
        }
    };
    let rt = match common::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("airf-agent: error: cannot start the I/O runtime: {e}");
            return exit::FAILED;
        }
    };
    let client = matches!(loc, Location::S3 { .. })
        .then(|| rt.block_on(airf_agent::s3_client::build(&args.s3.options())));
    let report = verify(&loc, client.as_ref().map(|c| (c, rt.handle())));
    let mut human = String::new();
    for c in &report.checks {
        human.push_str(&format!(
            "  {} {:<20} {}\n",
            if c.ok { "ok  " } else { "FAIL" },
            c.check,
            if c.ok {
                c.actual.clone()
            } else {
                format!("expected {}, got {}", c.expected, c.actual)
            }
        ));
    }
    human.push_str(&report.message);
    if report.status != Verdict::Intact {
        eprintln!("airf-agent: {}", report.message);
    }
    common::emit(&report, &human, json, false);
    match report.status {
        Verdict::Intact => exit::OK,
        Verdict::NotIntact => exit::NOT_INTACT,
        Verdict::Error => exit::FAILED,
    }
}
