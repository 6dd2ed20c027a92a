//! The manifest in JSON, as the agent stores and reads it. The schema itself is the
//! `airf-evidence` crate's, shared with the readers of evidence.

pub use airf_evidence::manifest::{
    AgentFootprint, CompressedFacts, EvidenceStatus, Manifest, ManifestHead, RawFacts,
    SCHEMA_VERSION, SchemaTooNew, SourceFacts, Tool,
};

/// Why a manifest cannot be read.
pub type ManifestError = airf_evidence::manifest::ManifestError<serde_json::Error>;

/// This agent, as the manifest names the tool that made the evidence.
pub fn this_tool() -> Tool {
    Tool {
        name: "airf-agent".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    }
}

/// Parses and checks a manifest (untrusted bytes).
pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
    Manifest::decode(serde_json::from_slice(bytes), || {
        serde_json::from_slice(bytes)
    })
}

/// Pretty JSON, as stored. An error, never a placeholder: the stored manifest is the proof that
/// the image is whole.
pub fn to_json(manifest: &Manifest) -> Result<Vec<u8>, serde_json::Error> {
    let mut v = serde_json::to_vec_pretty(manifest)?;
    v.push(b'\n');
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SAMPLE: &[u8] = include_bytes!("../evidence/src/fixtures/manifest-1-disk.json");

    #[test]
    fn round_trips() {
        let m = parse(SAMPLE).unwrap();
        assert_eq!(parse(&to_json(&m).unwrap()).unwrap(), m);
    }

    #[test]
    fn newer_schema_is_refused() {
        let mut m = parse(SAMPLE).unwrap();
        m.schema_version = SCHEMA_VERSION + 1;
        assert!(matches!(
            parse(&to_json(&m).unwrap()),
            Err(ManifestError::TooNew(_))
        ));
    }

    #[test]
    fn the_tool_is_this_agent() {
        let t = this_tool();
        assert_eq!(t.name, "airf-agent");
        assert_eq!(t.version, env!("CARGO_PKG_VERSION"));
    }

    proptest! {
        #[test]
        fn parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn corrupted_json_never_panics(pos in 0usize..2000, byte in any::<u8>()) {
            let mut json = SAMPLE.to_vec();
            let len = json.len();
            json[pos % len] = byte;
            let _ = parse(&json);
        }
    }
}
