//! Small files stored beside a memory image so an analyst can build symbols and read it without
//! hunting for the exact kernel: the kcore VMCOREINFO note (KASLR offsets, structure layout),
//! `/sys/kernel/btf/vmlinux` (BTF types), `/proc/kallsyms` (symbol addresses), `/proc/version`
//! (the banner Volatility matches), `/proc/cmdline` and `/proc/modules`.
//!
//! BTF, kallsyms, VMCOREINFO and the banner are the inputs of a Volatility symbol table
//! (`airf-isf`): [`collect`] says in the manifest whether all four were stored, and keeps their
//! bytes for `memory --symbols`.

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::kcore;
use super::source::KCORE;
use crate::destination::EvidenceSet;
use crate::symbols::InputBytes;
use airf_evidence::memory::{Artifact, MissingArtifact};
use airf_evidence::symbols::{SymbolInputs, SysctlChange, names};

/// Most bytes read from one artifact file (BTF is a few MiB).
const MAX_ARTIFACT: u64 = 64 << 20;

/// One artifact to collect: object name, origin, and how to read it.
struct Wanted {
    name: &'static str,
    origin: &'static str,
    content_type: &'static str,
    read: fn() -> Result<Vec<u8>, String>,
}

fn read_file(path: &str) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let f = File::open(path).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    f.take(MAX_ARTIFACT)
        .read_to_end(&mut out)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// The VMCOREINFO note of /proc/kcore.
pub fn read_vmcoreinfo() -> Result<Vec<u8>, String> {
    let f = File::open(KCORE).map_err(|e| e.to_string())?;
    let mut head = vec![0u8; kcore::HEAD_BYTES];
    let n = f.read_at(&mut head, 0).map_err(|e| e.to_string())?;
    head.truncate(n);
    let layout = kcore::parse_header(&head).map_err(|e| e.to_string())?;
    let (off, size) = layout.notes.ok_or("no PT_NOTE segment")?;
    if size > MAX_ARTIFACT {
        return Err(format!("PT_NOTE of {size} bytes is implausibly large"));
    }
    let mut notes = vec![0u8; usize::try_from(size).map_err(|e| e.to_string())?];
    let n = f.read_at(&mut notes, off).map_err(|e| e.to_string())?;
    notes.truncate(n);
    kcore::find_note(&notes, "VMCOREINFO")
        .map(|d| {
            let end = d.iter().position(|&b| b == 0).unwrap_or(d.len());
            d.get(..end).unwrap_or(d).to_vec()
        })
        .ok_or_else(|| "no VMCOREINFO note in /proc/kcore".into())
}

const WANTED: &[Wanted] = &[
    Wanted {
        name: names::VMCOREINFO,
        origin: "/proc/kcore VMCOREINFO note",
        content_type: "text/plain",
        read: read_vmcoreinfo,
    },
    Wanted {
        name: names::BTF,
        origin: "/sys/kernel/btf/vmlinux",
        content_type: "application/octet-stream",
        read: || read_file("/sys/kernel/btf/vmlinux"),
    },
    Wanted {
        name: names::BANNER,
        origin: "/proc/version",
        content_type: "text/plain",
        read: || read_file("/proc/version"),
    },
    // Read by `read_kallsyms`, which may lift kptr_restrict for it.
    Wanted {
        name: names::KALLSYMS,
        origin: KALLSYMS,
        content_type: "text/plain",
        read: || read_file(KALLSYMS),
    },
    Wanted {
        name: "memory.proc-cmdline.txt",
        origin: "/proc/cmdline",
        content_type: "text/plain",
        read: || read_file("/proc/cmdline"),
    },
    Wanted {
        name: "memory.proc-modules.txt",
        origin: "/proc/modules",
        content_type: "text/plain",
        read: || read_file("/proc/modules"),
    },
];

const KALLSYMS: &str = "/proc/kallsyms";
const KPTR_RESTRICT: &str = "/proc/sys/kernel/kptr_restrict";

/// What [`collect`] stored, what it could not, and the symbol-table inputs it read.
#[derive(Debug, Default)]
pub struct Collected {
    pub stored: Vec<Artifact>,
    pub missing: Vec<MissingArtifact>,
    pub symbol_inputs: Option<SymbolInputs>,
    /// The four inputs' bytes, when all four were stored.
    pub input_bytes: Option<InputBytes>,
}

fn kptr_restrict() -> Option<u8> {
    std::fs::read_to_string(KPTR_RESTRICT)
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn zeroed(kallsyms: &[u8]) -> bool {
    airf_isf::kallsyms::Kallsyms::parse(kallsyms).is_ok_and(|k| k.zeroed())
}

/// Reads `/proc/kallsyms`. `kptr_restrict=2` hides every address even from root; when
/// `allow_sysctl`, it is set to 1 (addresses shown to CAP_SYSLOG only) for the read and put back
/// at once, and the change is recorded.
fn read_kallsyms(allow_sysctl: bool, changes: &mut Vec<SysctlChange>) -> Result<Vec<u8>, String> {
    let bytes = read_file(KALLSYMS)?;
    if !zeroed(&bytes) || !allow_sysctl || kptr_restrict() != Some(2) {
        return Ok(bytes);
    }
    if let Err(e) = std::fs::write(KPTR_RESTRICT, "1") {
        changes.push(SysctlChange {
            name: "kernel.kptr_restrict".into(),
            from: "2".into(),
            to: "1".into(),
            reason: "kallsyms addresses are hidden at 2".into(),
            restored: true,
            restore_error: Some(format!("not changed: {e}")),
        });
        return Ok(bytes);
    }
    let read = read_file(KALLSYMS);
    let restore = std::fs::write(KPTR_RESTRICT, "2");
    changes.push(SysctlChange {
        name: "kernel.kptr_restrict".into(),
        from: "2".into(),
        to: "1".into(),
        reason: "kallsyms addresses are hidden at 2; 1 shows them to root only, for the read"
            .into(),
        restored: restore.is_ok(),
        restore_error: restore.err().map(|e| e.to_string()),
    });
    read
}

/// Collects and stores every artifact; what cannot be read or stored is listed as missing.
/// `allow_sysctl` lets it lift `kptr_restrict=2` for the kallsyms read (recorded).
pub fn collect(set: &EvidenceSet, allow_sysctl: bool) -> Collected {
    let mut out = Collected::default();
    let mut changes = Vec::new();
    let mut inputs: [Option<Vec<u8>>; 4] = Default::default();
    for w in WANTED {
        let miss = |cause: String| MissingArtifact {
            name: w.name.into(),
            origin: w.origin.into(),
            cause,
        };
        let read = if w.name == names::KALLSYMS {
            read_kallsyms(allow_sysctl, &mut changes)
        } else {
            (w.read)()
        };
        let bytes = match read {
            Ok(b) => b,
            Err(e) => {
                out.missing.push(miss(e));
                continue;
            }
        };
        let sha256 = hex::encode(crate::hash::Sha256::digest(&bytes));
        let size = bytes.len() as u64;
        let slot = [
            names::BTF,
            names::KALLSYMS,
            names::VMCOREINFO,
            names::BANNER,
        ]
        .iter()
        .position(|n| *n == w.name);
        match set.put_file(w.name, bytes.clone(), w.content_type) {
            Ok(obj) => {
                out.stored.push(Artifact {
                    name: w.name.into(),
                    origin: w.origin.into(),
                    size,
                    sha256,
                    location: obj.map(|o| o.location),
                });
                if let Some(slot) = slot.and_then(|i| inputs.get_mut(i)) {
                    *slot = Some(bytes);
                }
            }
            Err(e) => out.missing.push(miss(format!("storing failed: {e}"))),
        }
    }
    let (inputs_facts, bytes) = assess(inputs, &out.missing, changes);
    out.symbol_inputs = Some(inputs_facts);
    out.input_bytes = bytes;
    out
}

/// Says whether the four inputs of a symbol table were stored, and why not in plain words.
fn assess(
    inputs: [Option<Vec<u8>>; 4],
    missing: &[MissingArtifact],
    sysctl_changes: Vec<SysctlChange>,
) -> (SymbolInputs, Option<InputBytes>) {
    let cause = |name: &str| {
        missing
            .iter()
            .find(|m| m.name == name)
            .map_or_else(|| "not read".to_owned(), |m| m.cause.clone())
    };
    let [btf, kallsyms, vmcoreinfo, banner] = inputs;
    let mut problems = Vec::new();
    if btf.is_none() {
        problems.push(format!(
            "this kernel has no BTF (/sys/kernel/btf/vmlinux: {}): no symbol table can be built from this capture; build one from the kernel's debug package with dwarf2json",
            cause(names::BTF)
        ));
    }
    let kptr = kptr_restrict();
    let kallsyms_zeroed = kallsyms.as_deref().is_some_and(zeroed);
    match &kallsyms {
        None => problems.push(format!(
            "/proc/kallsyms was not stored ({}): symbol addresses are unknown",
            cause(names::KALLSYMS)
        )),
        Some(_) if kallsyms_zeroed => problems.push(format!(
            "every /proc/kallsyms address read as 0 (kernel.kptr_restrict={}): symbol addresses are unknown; run as root, and allow the agent to lift kptr_restrict=2 for the read",
            kptr.map_or_else(|| "unknown".to_owned(), |k| k.to_string())
        )),
        Some(_) => {}
    }
    if vmcoreinfo.is_none() {
        problems.push(format!(
            "VMCOREINFO was not stored ({}): the KASLR offset is unknown",
            cause(names::VMCOREINFO)
        ));
    }
    if banner.is_none() {
        problems.push(format!(
            "/proc/version was not stored ({}): Volatility could not match the table to the image",
            cause(names::BANNER)
        ));
    }
    let bytes = match (btf, kallsyms, vmcoreinfo, banner) {
        (Some(btf), Some(kallsyms), Some(vmcoreinfo), Some(banner)) if problems.is_empty() => {
            Some(InputBytes {
                btf,
                kallsyms,
                vmcoreinfo,
                banner,
            })
        }
        _ => None,
    };
    (
        SymbolInputs {
            complete: problems.is_empty(),
            problems,
            kptr_restrict: kptr,
            kallsyms_zeroed,
            sysctl_changes,
        },
        bytes,
    )
}
