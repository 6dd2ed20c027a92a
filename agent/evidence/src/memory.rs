//! What a memory manifest records about its source: which source made the image, the RAM it
//! covers, the LiME module when one was loaded, and the artifacts stored beside it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::content::MemoryContent;
pub use crate::ram::RamRange;
use crate::unreadable::BadRanges;

/// A memory source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemorySource {
    /// `/proc/kcore` (ELF core view of the kernel's address space).
    Kcore,
    /// The LiME kernel module, streaming over loopback TCP.
    Lime,
    /// A source a newer agent knows.
    #[serde(other)]
    Unknown,
}

impl std::fmt::Display for MemorySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Kcore => "kcore",
            Self::Lime => "lime",
            Self::Unknown => "unknown",
        })
    }
}

/// A source that was tried and not used, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceAttempt {
    /// The source.
    pub source: MemorySource,
    /// Why it was not used.
    pub cause: String,
}

/// One stored artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// Object name in the evidence folder, e.g. `memory.vmcoreinfo.txt`.
    pub name: String,
    /// Where it was read from, e.g. `/sys/kernel/btf/vmlinux`.
    pub origin: String,
    /// Bytes.
    pub size: u64,
    /// SHA-256, lowercase hex.
    pub sha256: String,
    /// Where it is stored (absent when the destination is stdout).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

/// An artifact that could not be collected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingArtifact {
    /// What it would have been called.
    pub name: String,
    /// Where it would have been read from.
    pub origin: String,
    /// Why it is missing.
    pub cause: String,
}

/// What a memory manifest records about its source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryFacts {
    /// The source that produced the image.
    pub source_used: MemorySource,
    /// Sources tried before it, with why they were not used.
    #[serde(default)]
    pub sources_skipped: Vec<SourceAttempt>,
    /// Image format: always `lime`.
    pub format: String,
    /// The "System RAM" ranges of /proc/iomem, in image order.
    pub ram_ranges: Vec<RamRange>,
    /// Bytes of RAM (sum of the ranges).
    pub ram_bytes: u64,
    /// `/proc/version`, the banner Volatility matches.
    pub banner: String,
    /// `uname -r`.
    pub kernel_release: String,
    /// Boot id, tells two boots apart.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// The LiME module, when LiME was used (or checked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lime_module: Option<LimeModuleFacts>,
    /// kcore PT_LOAD segments with a physical address (kcore only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kcore_segments: Option<usize>,
    /// Artifacts stored beside the image.
    #[serde(default)]
    pub artifacts: Vec<Artifact>,
    /// Artifacts that could not be collected, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts_missing: Vec<MissingArtifact>,
    /// Partial pages at the edge of RAM ranges that kcore cannot read (it maps whole pages);
    /// zero-filled in the image, not read errors. Offsets are physical addresses.
    #[serde(default, skip_serializing_if = "BadRanges::is_empty")]
    pub partial_pages: BadRanges,
    /// How to read the offsets of `unreadable` in this manifest: physical addresses, not image
    /// offsets.
    pub unreadable_offsets: String,
    /// Kernel lockdown mode (`none`, `integrity`, `confidentiality`), when the kernel shows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lockdown: Option<String>,
    /// What the image holds: zero pages per range and where the kernel banner is (absent in
    /// manifests made before the content check existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<MemoryContent>,
    /// Whether the inputs of a Volatility symbol table (BTF, kallsyms, VMCOREINFO, banner) were
    /// all stored, and why not (absent in manifests made before symbol tables existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol_inputs: Option<crate::symbols::SymbolInputs>,
}

/// What the manifest records about the module that was (or would have been) loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimeModuleFacts {
    /// Path given with `--lime-module`.
    pub path: PathBuf,
    /// SHA-256 of the module file, lowercase hex.
    pub sha256: String,
    /// `vermagic` from `.modinfo`.
    pub vermagic: String,
    /// `version` from `.modinfo`, when present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Module name from `.modinfo` (`lime`).
    pub name: String,
    /// The parameters the module was loaded with (absent when it was only checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<String>,
}
