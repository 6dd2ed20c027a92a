//! Small files stored beside a memory image so an analyst can build symbols and read it without
//! hunting for the exact kernel: the kcore VMCOREINFO note (KASLR offsets, structure layout),
//! `/sys/kernel/btf/vmlinux` (BTF types), `/proc/version` (the banner Volatility matches),
//! `/proc/cmdline` and `/proc/modules`.

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::kcore;
use super::source::KCORE;
use crate::destination::EvidenceSet;
use airf_evidence::memory::{Artifact, MissingArtifact};

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
        name: "memory.vmcoreinfo.txt",
        origin: "/proc/kcore VMCOREINFO note",
        content_type: "text/plain",
        read: read_vmcoreinfo,
    },
    Wanted {
        name: "memory.btf-vmlinux",
        origin: "/sys/kernel/btf/vmlinux",
        content_type: "application/octet-stream",
        read: || read_file("/sys/kernel/btf/vmlinux"),
    },
    Wanted {
        name: "memory.proc-version.txt",
        origin: "/proc/version",
        content_type: "text/plain",
        read: || read_file("/proc/version"),
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

/// Collects and stores every artifact; what cannot be read or stored is listed as missing.
pub fn collect(set: &EvidenceSet) -> (Vec<Artifact>, Vec<MissingArtifact>) {
    let mut stored = Vec::new();
    let mut missing = Vec::new();
    for w in WANTED {
        let miss = |cause: String| MissingArtifact {
            name: w.name.into(),
            origin: w.origin.into(),
            cause,
        };
        let bytes = match (w.read)() {
            Ok(b) => b,
            Err(e) => {
                missing.push(miss(e));
                continue;
            }
        };
        let sha256 = hex::encode(crate::hash::Sha256::digest(&bytes));
        let size = bytes.len() as u64;
        match set.put_file(w.name, bytes, w.content_type) {
            Ok(obj) => stored.push(Artifact {
                name: w.name.into(),
                origin: w.origin.into(),
                size,
                sha256,
                location: obj.map(|o| o.location),
            }),
            Err(e) => missing.push(miss(format!("storing failed: {e}"))),
        }
    }
    (stored, missing)
}
