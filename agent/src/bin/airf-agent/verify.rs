//! `airf-agent verify`: check stored evidence against its manifest, its place and its
//! countersignature.

use std::path::PathBuf;

use airf_agent::report::exit;
use airf_agent::verify::public_key::{self, KeyError};
use airf_agent::verify::{Location, Verdict, VerifyOptions, verify_with};
use clap::Args;

use crate::common::{self, OutputArgs, S3Args};

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The manifest: s3://BUCKET/KEY.manifest.json or a local path. The image (and the
    /// countersignature, <name>.manifest.sig.json) are read from the same folder.
    #[arg(value_name = "MANIFEST")]
    pub manifest: String,
    /// The copy was moved out of its <case>/<host>/<run>/ folders on purpose: do not check where
    /// it was found (reported as skipped).
    #[arg(long)]
    pub relocated: bool,
    /// Fail (NOT INTACT) unless a valid countersignature by the given key is beside the manifest.
    #[arg(long)]
    pub require_signature: bool,
    /// Public key that countersignatures are checked with: SubjectPublicKeyInfo PEM (ECDSA P-256).
    #[arg(long, value_name = "FILE.pem", conflicts_with = "public_key_kms")]
    pub public_key: Option<PathBuf>,
    /// The KMS signing key whose public half checks countersignatures (kms:GetPublicKey).
    #[arg(long, value_name = "KEY_ARN")]
    pub public_key_kms: Option<String>,
    #[command(flatten)]
    pub s3: S3Args,
    #[command(flatten)]
    pub output: OutputArgs,
}

fn key_error(e: &KeyError) -> i32 {
    eprintln!("airf-agent: error: {e}");
    match e {
        KeyError::Unusable(_) => exit::USAGE,
        KeyError::Unavailable(_) => exit::FAILED,
    }
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
    if args.require_signature && args.public_key.is_none() && args.public_key_kms.is_none() {
        eprintln!(
            "airf-agent: error: --require-signature needs the key to check with: add --public-key FILE.pem or --public-key-kms KEY_ARN"
        );
        return exit::USAGE;
    }
    let rt = match common::runtime_or_exit() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let key = if let Some(path) = &args.public_key {
        Some(public_key::from_pem_file(path))
    } else {
        args.public_key_kms.as_deref().map(|arn| {
            let kms = rt.block_on(public_key::kms_client(&args.s3.options()));
            public_key::from_kms(&kms, rt.handle(), arn)
        })
    };
    let public_key = match key.transpose() {
        Ok(k) => k,
        Err(e) => return key_error(&e),
    };
    let opts = VerifyOptions {
        relocated: args.relocated,
        require_signature: args.require_signature,
        public_key,
    };
    let client = common::s3_client_for(&loc, &rt, &args.s3);
    let report = verify_with(&loc, client.as_ref().map(|c| (c, rt.handle())), &opts);
    let mut human = String::new();
    for c in &report.checks {
        let (mark, detail) = match (c.ok, c.skipped) {
            (_, true) => ("skip", c.actual.clone()),
            (true, false) => ("ok  ", c.actual.clone()),
            (false, false) => ("FAIL", format!("expected {}, got {}", c.expected, c.actual)),
        };
        human.push_str(&format!("  {mark} {:<28} {detail}\n", c.check));
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
