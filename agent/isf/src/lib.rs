//! airf-isf: Volatility 3 symbol tables (ISF JSON) built from what a Linux kernel says about
//! itself, captured beside every memory image: BTF (`/sys/kernel/btf/vmlinux`: every type),
//! kallsyms (every symbol's address), VMCOREINFO (the KASLR offset, the release) and the
//! `/proc/version` banner. No debug package, no dwarf2json.
//!
//! - [`btf`], [`kallsyms`], [`vmcoreinfo`]: readers of the untrusted inputs;
//! - [`types`]: BTF types as ISF types; [`symbols`]: kallsyms as ISF symbols;
//! - [`model`]: the ISF JSON itself; [`generate`] ties them, [`compress`] writes `.json.xz`;
//! - [`table`]: a table with the manifest stored beside it.
//!
//! The controller Lambda and the agent both link this crate, so it depends on neither.

pub mod btf;
pub mod kallsyms;
pub mod model;
pub mod symbols;
pub mod table;
#[cfg(feature = "testing")]
pub mod testing;
pub mod types;
pub mod vmcoreinfo;

use std::io::Write as _;

use sha2::{Digest as _, Sha256};
use thiserror::Error;

use model::{InputRecord, Isf, LinuxMetadata, Metadata, Producer, SourceRecord};

/// The producer named in every table.
pub const PRODUCER: &str = "airf-isf";

/// Why no symbol table was made. Each says what is wrong with which input: a table that would
/// open an image wrongly is worse than none.
#[derive(Debug, Error)]
pub enum IsfError {
    #[error("BTF: {0}")]
    Btf(#[from] btf::BtfError),
    #[error("kallsyms: {0}")]
    Kallsyms(#[from] kallsyms::KallsymsError),
    #[error("{0}")]
    Vmcoreinfo(#[from] vmcoreinfo::VmcoreinfoError),
    #[error(
        "every kallsyms address is 0: kernel.kptr_restrict (or lockdown) hid them when they were captured; the symbol addresses are unknown"
    )]
    KallsymsZeroed,
    #[error("kallsyms has no {0}: Volatility cannot open an image without it")]
    MissingSymbol(&'static str),
    #[error("BTF has no type for {0}: Volatility cannot open an image without it")]
    MissingType(&'static str),
    #[error("inputs disagree: {0}")]
    Mismatch(String),
    #[error("banner: {0}")]
    Banner(String),
    #[error("BTF types: {0}")]
    Types(String),
    #[error("compressing the table: {0}")]
    Compress(#[from] std::io::Error),
    #[error("encoding the table: {0}")]
    Json(#[from] serde_json::Error),
}

/// One input: the name it is stored under and its bytes.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub name: &'a str,
    pub bytes: &'a [u8],
}

impl Input<'_> {
    fn record(&self, kind: &str) -> InputRecord {
        InputRecord {
            kind: kind.to_owned(),
            name: self.name.to_owned(),
            sha256: hex::encode(Sha256::digest(self.bytes)),
        }
    }
}

/// The four inputs of a table.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    pub btf: Input<'a>,
    pub kallsyms: Input<'a>,
    pub vmcoreinfo: Input<'a>,
    /// `/proc/version`.
    pub banner: Input<'a>,
}

pub use airf_evidence::symbols::TableSummary as Summary;

/// Builds the symbol table of the kernel these inputs came from.
pub fn generate(inputs: &Inputs<'_>) -> Result<(Isf, Summary), IsfError> {
    let btf = btf::Btf::parse(inputs.btf.bytes)?;
    let kallsyms = kallsyms::Kallsyms::parse(inputs.kallsyms.bytes)?;
    let vmcoreinfo = vmcoreinfo::Vmcoreinfo::parse(inputs.vmcoreinfo.bytes);
    let mut types = types::Types::convert(&btf)?;
    for required in ["task_struct", "list_head", "mm_struct", "files_struct"] {
        if !types.user_types.contains_key(required) {
            return Err(IsfError::Types(format!("there is no struct {required}")));
        }
    }
    let built = symbols::build(
        &btf,
        &mut types,
        &kallsyms,
        &vmcoreinfo,
        inputs.banner.bytes,
    )?;
    let banner = String::from_utf8_lossy(inputs.banner.bytes)
        .trim_end()
        .to_owned();
    let isf = Isf {
        metadata: Metadata {
            format: model::FORMAT.to_owned(),
            producer: Producer {
                name: PRODUCER.to_owned(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                inputs: vec![
                    inputs.btf.record("btf"),
                    inputs.kallsyms.record("kallsyms"),
                    inputs.vmcoreinfo.record("vmcoreinfo"),
                    inputs.banner.record("banner"),
                ],
            },
            linux: LinuxMetadata {
                symbols: vec![SourceRecord {
                    kind: "system-map".to_owned(),
                    name: inputs.kallsyms.name.to_owned(),
                    hash_type: "sha256".to_owned(),
                    hash_value: hex::encode(Sha256::digest(inputs.kallsyms.bytes)),
                }],
            },
        },
        base_types: types.base_types,
        user_types: types.user_types,
        enums: types.enums,
        symbols: built.symbols,
    };
    let summary = Summary {
        kernel_release: vmcoreinfo.release()?.to_owned(),
        banner,
        kernel_offset: built.kernel_offset,
        base_types: isf.base_types.len(),
        user_types: isf.user_types.len(),
        enums: isf.enums.len(),
        symbols: isf.symbols.len(),
        typed_symbols: built.typed,
        vmcoreinfo_symbols_checked: built.vmcoreinfo_symbols_checked,
    };
    Ok((isf, summary))
}

/// The table as `.json.xz`, which Volatility opens as is.
pub fn compress(isf: &Isf) -> Result<Vec<u8>, IsfError> {
    let json = serde_json::to_vec(isf)?;
    let mut enc = liblzma::write::XzEncoder::new(Vec::with_capacity(json.len() / 8), 6);
    enc.write_all(&json)?;
    Ok(enc.finish()?)
}

/// Reads a `.json.xz` table back (for checks and tests).
pub fn decompress(xz: &[u8]) -> Result<Isf, IsfError> {
    let dec = liblzma::read::XzDecoder::new(xz);
    Ok(serde_json::from_reader(dec)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::btf::testing::Builder;
    use base64::Engine as _;
    use model::Desc;
    use proptest::prelude::*;

    const BANNER: &[u8] = b"Linux version 6.1.0-test (debian-kernel@lists.debian.org) (gcc 12) #1 SMP PREEMPT_DYNAMIC Debian 6.1.0\n";
    const OFFSET: u64 = 0x1b00_0000;

    /// A toy kernel: the types and symbols Volatility needs to open an image.
    fn kernel_btf() -> Vec<u8> {
        let mut b = Builder::new();
        let int = b.int("int", 4, true);
        let ch = b.char("char", true);
        let ulong = b.int("long unsigned int", 8, false);
        let fwd = b.fwd("task_struct", false);
        let tptr = b.ptr(fwd);
        let lh_fwd = b.fwd("list_head", false);
        let lh_ptr = b.ptr(lh_fwd);
        let lh = b.structure(
            "list_head",
            16,
            &[("next", lh_ptr, 0, 0), ("prev", lh_ptr, 64, 0)],
        );
        let comm = b.array(ch, int, 16);
        let mm = b.structure("mm_struct", 8, &[("pgd", ulong, 0, 0)]);
        let mmp = b.ptr(mm);
        let files = b.structure("files_struct", 4, &[("count", int, 0, 0)]);
        let fp = b.ptr(files);
        b.structure(
            "task_struct",
            64,
            &[
                ("pid", int, 0, 0),
                ("tasks", lh, 64, 0),
                ("comm", comm, 192, 0),
                ("parent", tptr, 320, 0),
                ("active_mm", mmp, 384, 0),
                ("files", fp, 448, 0),
            ],
        );
        let seq = b.structure("seqcount_raw_spinlock", 4, &[("seqcount", int, 0, 0)]);
        b.typedef("seqcount_raw_spinlock_t", seq);
        b.structure(
            "timekeeper",
            24,
            &[("offs_real", ulong, 0, 0), ("offs_boot", ulong, 64, 0)],
        );
        let rq = b.structure("rq", 8, &[("nr_running", int, 0, 0)]);
        let v = b.var("runqueues", rq);
        b.datasec(".data..percpu", 4096, &[(v, 0x2c000, 8)]);
        b.build()
    }

    fn kallsyms() -> String {
        let sym = |a: u64, k: char, n: &str| format!("{a:016x} {k} {n}\n");
        [
            sym(0xffff_ffff_8100_0000 + OFFSET, 'T', "_text"),
            sym(0x2c000, 'A', "runqueues"),
            sym(0xffff_ffff_8260_0000 + OFFSET, 'D', "init_task"),
            sym(0xffff_ffff_8260_1000 + OFFSET, 'D', "init_mm"),
            sym(0xffff_ffff_8260_2000 + OFFSET, 'D', "init_files"),
            sym(0xffff_ffff_8220_0000 + OFFSET, 'R', "linux_banner"),
            sym(0xffff_ffff_8280_0000 + OFFSET, 'D', "init_top_pgt"),
            sym(0xffff_ffff_8270_0000 + OFFSET, 'd', "tk_core"),
            sym(0xffff_ffff_8260_3000 + OFFSET, 'D', "modules"),
            sym(0xffff_ffff_8290_0000 + OFFSET, 'B', "mem_section"),
            sym(0xffff_ffff_8220_1000 + OFFSET, 'R', "taint_flags"),
            "ffffffffc0001000 t virtblk_probe\t[virtio_blk]\n".to_owned(),
        ]
        .concat()
    }

    fn vmcoreinfo() -> String {
        format!(
            "OSRELEASE=6.1.0-test\nSYMBOL(init_top_pgt)={:x}\nSYMBOL(mem_section)=ff1100001e523000\nKERNELOFFSET={OFFSET:x}\n",
            0xffff_ffff_8280_0000 + OFFSET
        )
    }

    fn make(
        btf: &[u8],
        kallsyms: &str,
        vmcoreinfo: &str,
        banner: &[u8],
    ) -> Result<(Isf, Summary), IsfError> {
        generate(&Inputs {
            btf: Input {
                name: "memory.btf-vmlinux",
                bytes: btf,
            },
            kallsyms: Input {
                name: "memory.kallsyms.txt",
                bytes: kallsyms.as_bytes(),
            },
            vmcoreinfo: Input {
                name: "memory.vmcoreinfo.txt",
                bytes: vmcoreinfo.as_bytes(),
            },
            banner: Input {
                name: "memory.proc-version.txt",
                bytes: banner,
            },
        })
    }

    #[test]
    fn a_toy_kernel_gives_a_table_volatility_can_use() {
        let (isf, summary) = make(&kernel_btf(), &kallsyms(), &vmcoreinfo(), BANNER).unwrap();
        // Link-time addresses: KERNELOFFSET removed, per-CPU offsets kept.
        assert_eq!(isf.symbols["_text"].address, 0xffff_ffff_8100_0000);
        assert_eq!(isf.symbols["runqueues"].address, 0x2c000);
        assert!(!isf.symbols.contains_key("virtblk_probe"));
        assert!(!isf.symbols.contains_key("taint_flags"));
        assert_eq!(
            isf.symbols["init_task"].ty,
            Some(Desc::Struct {
                name: "task_struct".into()
            })
        );
        assert_eq!(
            isf.symbols["runqueues"].ty,
            Some(Desc::Struct { name: "rq".into() })
        );
        // The banner: the /proc/version line and a NUL, as linux_banner is in memory.
        let banner = &isf.symbols["linux_banner"];
        let data = base64::engine::general_purpose::STANDARD
            .decode(banner.constant_data.as_ref().unwrap())
            .unwrap();
        assert_eq!(data, [BANNER, b"\0"].concat());
        assert_eq!(
            banner.ty,
            Some(Desc::Array {
                count: u32::try_from(BANNER.len() + 1).unwrap(),
                subtype: Box::new(Desc::base("char"))
            })
        );
        // tk_core's anonymous struct: the timekeeper after the 4-byte seqcount, 8-aligned.
        let tk = &isf.user_types[symbols::TK_CORE_TYPE];
        assert_eq!((tk.fields["timekeeper"].offset, tk.size), (8, 32));
        assert_eq!(summary.kernel_offset, OFFSET);
        assert_eq!(summary.vmcoreinfo_symbols_checked, 1);
        assert_eq!(isf.metadata.producer.inputs.len(), 4);
        // The .json.xz reads back to the same table.
        assert_eq!(decompress(&compress(&isf).unwrap()).unwrap(), isf);
    }

    #[test]
    fn the_same_inputs_give_the_same_bytes() {
        let a = make(&kernel_btf(), &kallsyms(), &vmcoreinfo(), BANNER)
            .unwrap()
            .0;
        let b = make(&kernel_btf(), &kallsyms(), &vmcoreinfo(), BANNER)
            .unwrap()
            .0;
        assert_eq!(compress(&a).unwrap(), compress(&b).unwrap());
    }

    #[test]
    fn inputs_that_would_lie_are_refused() {
        let btf = kernel_btf();
        let zeroed: String = kallsyms()
            .lines()
            .map(|l| format!("0000000000000000{}\n", &l[16..]))
            .collect();
        let err = |r: Result<(Isf, Summary), IsfError>| r.unwrap_err().to_string();
        assert!(err(make(&btf, &zeroed, &vmcoreinfo(), BANNER)).contains("kptr_restrict"));
        assert!(
            err(make(
                &btf[..btf.len() / 2],
                &kallsyms(),
                &vmcoreinfo(),
                BANNER
            ))
            .starts_with("BTF:")
        );
        assert!(
            err(make(b"", &kallsyms(), &vmcoreinfo(), BANNER))
                .contains("shorter than its 24-byte header")
        );
        // kallsyms from another boot (another KASLR offset) than VMCOREINFO.
        let other = vmcoreinfo().replace(
            "SYMBOL(init_top_pgt)=ffffffff9d8",
            "SYMBOL(init_top_pgt)=ffffffff9e8",
        );
        assert!(err(make(&btf, &kallsyms(), &other, BANNER)).contains("different boots"));
        // A banner of another release.
        assert!(
            err(make(
                &btf,
                &kallsyms(),
                &vmcoreinfo(),
                b"Linux version 6.12.0 (x) #1\n"
            ))
            .contains("OSRELEASE")
        );
        assert!(
            err(make(
                &btf,
                &kallsyms(),
                &vmcoreinfo().replace("KERNELOFFSET", "X"),
                BANNER
            ))
            .contains("KERNELOFFSET")
        );
        let no_task = kallsyms().replace(" init_task\n", " init_tusk\n");
        assert!(err(make(&btf, &no_task, &vmcoreinfo(), BANNER)).contains("no init_task"));
    }

    proptest! {
        #[test]
        fn mutated_btf_gives_a_table_or_an_error_never_a_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
            let mut btf = kernel_btf();
            let n = btf.len();
            for (at, byte) in flips {
                btf[at % n] = byte;
            }
            let _ = make(&btf, &kallsyms(), &vmcoreinfo(), BANNER);
        }
    }
}
