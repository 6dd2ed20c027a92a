//! What airf records about Volatility symbol tables: whether a memory capture stored everything
//! a table is built from ([`SymbolInputs`], in the memory manifest), and the small manifest
//! stored beside each table ([`SymbolTableManifest`]).

use serde::{Deserialize, Serialize};

use crate::value::Extra;

/// Artifact names of the four inputs of a symbol table, as a memory capture stores them.
pub mod names {
    /// `/sys/kernel/btf/vmlinux`.
    pub const BTF: &str = "memory.btf-vmlinux";
    /// `/proc/kallsyms`.
    pub const KALLSYMS: &str = "memory.kallsyms.txt";
    /// The VMCOREINFO note of `/proc/kcore`.
    pub const VMCOREINFO: &str = "memory.vmcoreinfo.txt";
    /// `/proc/version`.
    pub const BANNER: &str = "memory.proc-version.txt";
    /// The table, beside the image (`<evidence>.isf.json.xz`).
    pub const TABLE: &str = "memory.isf.json.xz";
    /// Its manifest.
    pub const TABLE_MANIFEST: &str = "memory.isf.manifest.json";
}

/// Whether a memory capture stored what a Volatility symbol table is built from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SymbolInputs {
    /// BTF, kallsyms with addresses, VMCOREINFO and the banner were all stored.
    pub complete: bool,
    /// Why a table cannot be built, one plain sentence per problem.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    /// `kernel.kptr_restrict` when kallsyms was read (absent when unreadable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kptr_restrict: Option<u8>,
    /// Every kallsyms address read as 0.
    #[serde(default)]
    pub kallsyms_zeroed: bool,
    /// Settings the agent changed on the host to read the inputs, and whether each was put back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sysctl_changes: Vec<SysctlChange>,
}

/// One sysctl the agent changed and restored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SysctlChange {
    /// e.g. `kernel.kptr_restrict`.
    pub name: String,
    pub from: String,
    pub to: String,
    /// Why.
    pub reason: String,
    /// The old value was written back.
    pub restored: bool,
    /// Why it could not be written back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_error: Option<String>,
}

/// One input file of a table, as it was checked against the memory manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableInput {
    /// Object name in the evidence folder.
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

/// The manifest stored beside a symbol table (`memory.isf.manifest.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SymbolTableManifest {
    /// Always `isf`.
    pub kind: String,
    /// The table's object name (`memory.isf.json.xz`).
    pub table: String,
    /// Bytes of the `.json.xz`.
    pub size: u64,
    /// SHA-256 of the `.json.xz`.
    pub sha256: String,
    /// SHA-256 of the JSON inside.
    pub json_sha256: String,
    /// The memory manifest whose artifacts were used, and its SHA-256 (absent when the table
    /// was built at capture time, before that manifest existed; the inputs' hashes tie them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_manifest: Option<TableInput>,
    /// BTF, kallsyms, VMCOREINFO and banner, each checked against the memory manifest.
    pub inputs: Vec<TableInput>,
    /// The generator and its version, e.g. `airf-isf 0.1.0`.
    pub producer: String,
    /// Who ran it: `airf-agent symbols`, `airf-agent memory --symbols`, the controller.
    pub made_by: String,
    /// RFC 3339.
    pub generated_at: String,
    /// Seconds spent building and compressing.
    pub duration_seconds: f64,
    /// The kernel's release and banner, the KASLR offset removed, and counts.
    pub summary: TableSummary,
    /// Fields a newer writer added.
    #[serde(flatten)]
    pub extra: Extra,
}

/// What a table holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSummary {
    /// `OSRELEASE` of VMCOREINFO.
    pub kernel_release: String,
    /// The `linux_banner` Volatility matches.
    pub banner: String,
    /// KASLR offset removed from kallsyms addresses.
    pub kernel_offset: u64,
    pub base_types: usize,
    pub user_types: usize,
    pub enums: usize,
    pub symbols: usize,
    /// Symbols with a type (per-CPU variables from BTF, and the globals Volatility reads).
    pub typed_symbols: usize,
    /// VMCOREINFO `SYMBOL()` entries found at the same address in kallsyms (same boot).
    pub vmcoreinfo_symbols_checked: usize,
}
