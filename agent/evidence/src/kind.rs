//! What a piece of evidence is: memory, a disk, or a triage of the running host.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The kind of evidence: the manifest's `kind`, the workflow's acquisition kind.
///
/// Serialized as `memory`, `disk` or `triage`; any other word (a kind a newer agent knows) reads as
/// [`EvidenceKind::Unknown`] and is written back unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum EvidenceKind {
    /// Physical memory, as a LiME-format image.
    Memory,
    /// A block device or disk image file, as a raw image.
    Disk,
    /// The host's volatile state (`airf-agent triage`): processes, sockets, files.
    Triage,
    /// A kind this version does not know, by its serialized name.
    Unknown(String),
}

impl EvidenceKind {
    /// The serialized name: `memory`, `disk`, or the unknown kind's own name.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Memory => "memory",
            Self::Disk => "disk",
            Self::Triage => "triage",
            Self::Unknown(name) => name,
        }
    }
}

impl From<String> for EvidenceKind {
    fn from(name: String) -> Self {
        match name.as_str() {
            "memory" => Self::Memory,
            "disk" => Self::Disk,
            "triage" => Self::Triage,
            _ => Self::Unknown(name),
        }
    }
}

impl From<EvidenceKind> for String {
    fn from(kind: EvidenceKind) -> Self {
        match kind {
            EvidenceKind::Unknown(name) => name,
            known => known.as_str().to_owned(),
        }
    }
}

impl fmt::Display for EvidenceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialized_names_are_the_workflow_words() {
        for (kind, word) in [
            (EvidenceKind::Memory, "\"memory\""),
            (EvidenceKind::Disk, "\"disk\""),
            (EvidenceKind::Triage, "\"triage\""),
            (EvidenceKind::Unknown("network".into()), "\"network\""),
        ] {
            assert_eq!(serde_json::to_string(&kind).unwrap(), word);
            assert_eq!(serde_json::from_str::<EvidenceKind>(word).unwrap(), kind);
        }
    }

    #[test]
    fn display_is_the_serialized_name() {
        assert_eq!(EvidenceKind::Memory.to_string(), "memory");
        assert_eq!(EvidenceKind::Disk.to_string(), "disk");
        assert_eq!(EvidenceKind::Unknown("tpm".into()).to_string(), "tpm");
    }
}
