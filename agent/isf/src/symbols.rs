//! ISF `symbols`: kallsyms addresses moved back to link time, with types where they are known.
//!
//! Volatility adds the KASLR shift it finds in the image itself (`LinuxIntelStacker.find_aslr`,
//! or the image's VMCOREINFO), so it expects link-time addresses, as in System.map. The
//! run-time addresses of kallsyms therefore lose VMCOREINFO's `KERNELOFFSET`. Per-CPU symbols
//! (offsets into the per-CPU area, below the kernel image) are not moved by KASLR and are kept.
//!
//! Types: vmlinux BTF types only per-CPU variables (`DATASEC`), so the globals that Volatility 3's
//! Linux plugins read through `object_from_symbol` are typed from their C declarations in the
//! kernel source ([`DECLARED`]), and only when BTF has the named type. A symbol without a type
//! is left untyped, never given a guessed one.

use std::collections::BTreeMap;

use base64::Engine as _;

use crate::IsfError;
use crate::btf::{Btf, Kind, TypeId};
use crate::kallsyms::Kallsyms;
use crate::model::{Desc, Field, Symbol, UserType};
use crate::types::Types;
use crate::vmcoreinfo::Vmcoreinfo;

/// `__START_KERNEL_map`: the kernel image is mapped at and above this address (x86_64).
pub const KERNEL_MAP: u64 = 0xffff_ffff_8000_0000;

/// A C type spelled as the kernel declares a global.
#[derive(Debug)]
enum Decl {
    Struct(&'static str),
    /// A base type or a typedef, by name.
    Named(&'static str),
    Ptr(&'static Decl),
    Array(&'static Decl, u32),
    /// `static struct { seqcount_raw_spinlock_t seq; struct timekeeper timekeeper; } tk_core`
    /// (kernel/time/timekeeping.c before `struct tk_data`).
    TkCore,
}

/// Globals Volatility 3.28's Linux plugins dereference, with their declarations in the kernel.
const DECLARED: &[(&str, Decl)] = &[
    ("init_task", Decl::Struct("task_struct")),
    ("init_mm", Decl::Struct("mm_struct")),
    ("init_files", Decl::Struct("files_struct")),
    ("init_pid_ns", Decl::Struct("pid_namespace")),
    ("init_net", Decl::Struct("net")),
    ("init_uts_ns", Decl::Struct("uts_namespace")),
    ("modules", Decl::Struct("list_head")),
    ("module_kset", Decl::Ptr(&Decl::Struct("kset"))),
    ("mod_tree", Decl::Struct("mod_tree_root")),
    ("net_namespace_list", Decl::Struct("list_head")),
    ("socket_file_ops", Decl::Struct("file_operations")),
    (
        "sockfs_dentry_operations",
        Decl::Struct("dentry_operations"),
    ),
    ("tty_drivers", Decl::Struct("list_head")),
    ("bpf_kallsyms", Decl::Struct("list_head")),
    ("prog_idr", Decl::Struct("idr")),
    ("ftrace_ops_list", Decl::Ptr(&Decl::Struct("ftrace_ops"))),
    ("ftrace_list_end", Decl::Struct("ftrace_ops")),
    ("ftrace_mod_maps", Decl::Struct("list_head")),
    ("ftrace_ops_trampoline_list", Decl::Struct("list_head")),
    (
        "keyboard_notifier_list",
        Decl::Struct("atomic_notifier_head"),
    ),
    (
        "registered_fb",
        Decl::Array(&Decl::Ptr(&Decl::Struct("fb_info")), 32),
    ),
    ("num_registered_fb", Decl::Named("int")),
    ("idt_table", Decl::Array(&Decl::Named("gate_desc"), 256)),
    ("prb", Decl::Ptr(&Decl::Struct("printk_ringbuffer"))),
    ("log_buf", Decl::Ptr(&Decl::Named("char"))),
    ("log_buf_len", Decl::Named("u32")),
    ("cap_last_cap", Decl::Named("int")),
    ("vmemmap_base", Decl::Named("long unsigned int")),
    ("page_offset_base", Decl::Named("long unsigned int")),
    ("mem_map", Decl::Ptr(&Decl::Struct("page"))),
    ("_text", Decl::Named("char")),
    ("_etext", Decl::Named("char")),
    ("tk_core", Decl::TkCore),
];

/// Globals whose C type has a length only the kernel source knows (`taint_flags[TAINT_FLAGS_COUNT]`,
/// a macro BTF does not carry). Volatility dereferences them when present, and an untyped symbol
/// fails the plugin, while without the symbol it uses its own table of the same facts. So they
/// are left out rather than given a guessed length.
const LEFT_OUT: &[&str] = &["taint_flags"];

/// Symbols Volatility cannot open an image without (`find_aslr` and the page-table base).
const REQUIRED: &[&str] = &["init_task", "init_files", "init_mm", "linux_banner"];

/// Name of the user type made for `tk_core`'s anonymous struct.
pub const TK_CORE_TYPE: &str = "tk_core__anonymous";

/// The symbols of one kernel, and what was done to get them.
#[derive(Debug)]
pub struct Built {
    pub symbols: BTreeMap<String, Symbol>,
    pub typed: usize,
    pub kernel_offset: u64,
    pub vmcoreinfo_symbols_checked: usize,
}

/// Link-time address of a run-time kernel address.
pub fn link_address(runtime: u64, kernel_offset: u64) -> u64 {
    if runtime >= KERNEL_MAP {
        runtime.wrapping_sub(kernel_offset)
    } else {
        runtime
    }
}

fn find_named(btf: &Btf, name: &str, want_struct: bool) -> Option<TypeId> {
    btf.iter()
        .find(|(_, t)| {
            t.name == name
                && if want_struct {
                    matches!(t.kind, Kind::Struct { .. })
                } else {
                    matches!(
                        t.kind,
                        Kind::Int { .. } | Kind::Typedef(_) | Kind::Float { .. }
                    )
                }
        })
        .map(|(id, _)| id)
}

fn declared(btf: &Btf, types: &mut Types, decl: &Decl) -> Result<Option<Desc>, IsfError> {
    Ok(match decl {
        Decl::Struct(name) => match find_named(btf, name, true) {
            Some(id) => Some(types.desc(btf, id)?),
            None => None,
        },
        Decl::Named(name) => match find_named(btf, name, false) {
            Some(id) => Some(types.desc(btf, id)?),
            None => None,
        },
        Decl::Ptr(to) => declared(btf, types, to)?.map(|d| Desc::Pointer {
            subtype: Box::new(d),
        }),
        Decl::Array(of, count) => declared(btf, types, of)?.map(|d| Desc::Array {
            count: *count,
            subtype: Box::new(d),
        }),
        Decl::TkCore => tk_core(btf, types)?,
    })
}

/// The type of `tk_core`: `struct tk_data` where the kernel names it, else its anonymous
/// struct laid out by the C rules from the two member types BTF has.
fn tk_core(btf: &Btf, types: &mut Types) -> Result<Option<Desc>, IsfError> {
    if let Some(id) = find_named(btf, "tk_data", true) {
        return Ok(Some(types.desc(btf, id)?));
    }
    let (Some(seq), Some(tk)) = (
        find_named(btf, "seqcount_raw_spinlock_t", false),
        find_named(btf, "timekeeper", true),
    ) else {
        return Ok(None);
    };
    let seq_size = Types::size_of(btf, seq)?;
    let tk_align = Types::align_of(btf, tk)?;
    let tk_offset = seq_size.div_ceil(tk_align) * tk_align;
    let align = tk_align.max(Types::align_of(btf, seq)?);
    let size = (tk_offset + Types::size_of(btf, tk)?).div_ceil(align) * align;
    let to_u32 =
        |v: u64| u32::try_from(v).map_err(|_| IsfError::Types("tk_core is too large".into()));
    let fields = BTreeMap::from([
        (
            "seq".to_owned(),
            Field {
                ty: types.desc(btf, seq)?,
                offset: 0,
                anonymous: false,
            },
        ),
        (
            "timekeeper".to_owned(),
            Field {
                ty: types.desc(btf, tk)?,
                offset: to_u32(tk_offset)?,
                anonymous: false,
            },
        ),
    ]);
    types.user_types.insert(
        TK_CORE_TYPE.to_owned(),
        UserType {
            kind: "struct".to_owned(),
            size: to_u32(size)?,
            fields,
        },
    );
    Ok(Some(Desc::Struct {
        name: TK_CORE_TYPE.to_owned(),
    }))
}

/// Builds the symbol table.
pub fn build(
    btf: &Btf,
    types: &mut Types,
    kallsyms: &Kallsyms,
    vmcoreinfo: &Vmcoreinfo,
    banner: &[u8],
) -> Result<Built, IsfError> {
    if kallsyms.zeroed() {
        return Err(IsfError::KallsymsZeroed);
    }
    let kernel_offset = vmcoreinfo.kernel_offset()?;
    if kernel_offset >= 1 << 30 || kernel_offset % 4096 != 0 {
        return Err(IsfError::Mismatch(format!(
            "VMCOREINFO KERNELOFFSET={kernel_offset:x} is not a page-aligned offset below 1 GiB"
        )));
    }

    // kallsyms and VMCOREINFO must describe the same boot: the symbols VMCOREINFO lists have
    // the same run-time addresses in both. Some `SYMBOL()` entries hold a pointer's value
    // instead (`mem_section`, a heap address): only values inside the kernel image are
    // addresses of the symbol.
    let mut checked = 0;
    for (name, address) in vmcoreinfo.symbols()? {
        if address < KERNEL_MAP {
            continue;
        }
        if let Some(s) = kallsyms.get(name) {
            if s.address != address {
                return Err(IsfError::Mismatch(format!(
                    "kallsyms has {name} at {:#x}, VMCOREINFO at {address:#x}: they come from different boots",
                    s.address
                )));
            }
            checked += 1;
        }
    }
    if checked == 0 {
        return Err(IsfError::Mismatch(
            "no VMCOREINFO SYMBOL(...) is in kallsyms: they cannot be tied to one boot".into(),
        ));
    }

    let mut symbols = BTreeMap::new();
    for s in &kallsyms.symbols {
        let link = link_address(s.address, kernel_offset);
        if s.address >= KERNEL_MAP && link < KERNEL_MAP {
            return Err(IsfError::Mismatch(format!(
                "{} at {:#x} lies below the kernel map once KERNELOFFSET {kernel_offset:#x} is removed",
                s.name, s.address
            )));
        }
        if LEFT_OUT.contains(&s.name.as_str()) {
            continue;
        }
        // The first of several static symbols of one name wins, as in System.map readers.
        symbols.entry(s.name.clone()).or_insert(Symbol {
            address: link,
            ty: None,
            constant_data: None,
        });
    }

    let mut typed = 0;
    // Per-CPU variables: BTF's DATASEC names each VAR and its type.
    for (_, t) in btf.iter() {
        if let Kind::Var(ty) = t.kind
            && let Some(sym) = symbols.get_mut(&t.name)
            && sym.ty.is_none()
        {
            sym.ty = Some(types.desc(btf, ty)?);
            typed += 1;
        }
    }
    for (name, decl) in DECLARED {
        if !symbols.contains_key(*name) {
            continue;
        }
        if let Some(desc) = declared(btf, types, decl)?
            && let Some(sym) = symbols.get_mut(*name)
            && sym.ty.is_none()
        {
            sym.ty = Some(desc);
            typed += 1;
        }
    }

    let banner = banner_data(banner, vmcoreinfo)?;
    let char_desc = types.desc(
        btf,
        find_named(btf, "char", false).ok_or(IsfError::MissingType("char"))?,
    )?;
    let sym = symbols
        .get_mut("linux_banner")
        .ok_or(IsfError::MissingSymbol("linux_banner"))?;
    sym.ty = Some(Desc::Array {
        count: u32::try_from(banner.len()).map_err(|_| IsfError::Banner("too long".into()))?,
        subtype: Box::new(char_desc),
    });
    sym.constant_data = Some(base64::engine::general_purpose::STANDARD.encode(&banner));
    typed += 1;

    for name in REQUIRED {
        match symbols.get(*name) {
            None => return Err(IsfError::MissingSymbol(name)),
            Some(s) if s.ty.is_none() => return Err(IsfError::MissingType(name)),
            Some(_) => {}
        }
    }
    if !symbols.contains_key("init_top_pgt") && !symbols.contains_key("swapper_pg_dir") {
        return Err(IsfError::MissingSymbol("init_top_pgt"));
    }
    Ok(Built {
        symbols,
        typed,
        kernel_offset,
        vmcoreinfo_symbols_checked: checked,
    })
}

/// The bytes of `linux_banner` in memory: the `/proc/version` line with its newline, then NUL.
fn banner_data(banner: &[u8], vmcoreinfo: &Vmcoreinfo) -> Result<Vec<u8>, IsfError> {
    let release = vmcoreinfo.release()?;
    let prefix = format!("Linux version {release} (");
    if !banner.starts_with(prefix.as_bytes()) {
        let shown: String = String::from_utf8_lossy(banner).chars().take(80).collect();
        return Err(IsfError::Banner(format!(
            "{shown:?} does not start with {prefix:?} (VMCOREINFO OSRELEASE)"
        )));
    }
    let line_end = banner.iter().position(|&b| b == b'\n').ok_or_else(|| {
        IsfError::Banner("the banner has no terminating newline (truncated?)".into())
    })?;
    let mut data = banner.get(..=line_end).unwrap_or(banner).to_vec();
    data.push(0);
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_kernel_image_addresses_move() {
        assert_eq!(
            link_address(0xffff_ffff_9c00_0000, 0x1b00_0000),
            0xffff_ffff_8100_0000
        );
        assert_eq!(link_address(0x2_a000, 0x1b00_0000), 0x2_a000);
    }
}
