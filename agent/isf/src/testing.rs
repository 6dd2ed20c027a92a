//! A toy kernel's four symbol-table inputs (BTF, kallsyms, VMCOREINFO, banner), for the tests of
//! the crates that build, store or read tables: the controller's Symbols step and the workflow's
//! end-to-end tests, which have no kernel of their own to capture. Behind the `testing` feature;
//! never in a shipped binary.
//!
//! The kernel has just what Volatility needs to open an image: `task_struct` with `tasks`,
//! `comm`, `parent`, `active_mm` and `files`, the per-CPU `runqueues`, `tk_core`, and the
//! symbols `init_task`, `init_mm`, `init_files`, `linux_banner`, `init_top_pgt` and `modules`,
//! loaded at a KASLR offset of [`KERNEL_OFFSET`].

use crate::btf::testing::Builder;
use crate::table::InputBytes;

/// `OSRELEASE` of the toy kernel.
pub const RELEASE: &str = "6.1.0-test";
/// Its `/proc/version`.
pub const BANNER: &str = "Linux version 6.1.0-test (debian-kernel@lists.debian.org) (gcc 12) #1 SMP PREEMPT_DYNAMIC Debian 6.1.0\n";
/// Its KASLR offset.
pub const KERNEL_OFFSET: u64 = 0x1b00_0000;

/// The toy kernel's `/sys/kernel/btf/vmlinux`.
pub fn btf() -> Vec<u8> {
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
    // An enum, a const and a function pointer, as real kernels have everywhere.
    let pid_type = b.enumeration("pid_type", 4, &[("PIDTYPE_PID", 0), ("PIDTYPE_TGID", 1)]);
    let const_int = b.constant(int);
    let handler = b.func_proto(int, &[const_int]);
    let handler_ptr = b.ptr(handler);
    let files = b.structure(
        "files_struct",
        16,
        &[
            ("count", int, 0, 0),
            ("type", pid_type, 32, 0),
            ("handler", handler_ptr, 64, 0),
        ],
    );
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

/// Its `/proc/kallsyms`, read as root: run-time addresses (link-time plus [`KERNEL_OFFSET`]).
pub fn kallsyms() -> String {
    let sym = |a: u64, k: char, n: &str| format!("{a:016x} {k} {n}\n");
    [
        sym(0xffff_ffff_8100_0000 + KERNEL_OFFSET, 'T', "_text"),
        sym(0x2c000, 'A', "runqueues"),
        sym(0xffff_ffff_8260_0000 + KERNEL_OFFSET, 'D', "init_task"),
        sym(0xffff_ffff_8260_1000 + KERNEL_OFFSET, 'D', "init_mm"),
        sym(0xffff_ffff_8260_2000 + KERNEL_OFFSET, 'D', "init_files"),
        sym(0xffff_ffff_8220_0000 + KERNEL_OFFSET, 'R', "linux_banner"),
        sym(0xffff_ffff_8280_0000 + KERNEL_OFFSET, 'D', "init_top_pgt"),
        sym(0xffff_ffff_8270_0000 + KERNEL_OFFSET, 'd', "tk_core"),
        sym(0xffff_ffff_8260_3000 + KERNEL_OFFSET, 'D', "modules"),
        "ffffffffc0001000 t virtblk_probe\t[virtio_blk]\n".to_owned(),
    ]
    .concat()
}

/// Its VMCOREINFO note.
pub fn vmcoreinfo() -> String {
    format!(
        "OSRELEASE={RELEASE}\nSYMBOL(init_top_pgt)={:x}\nKERNELOFFSET={KERNEL_OFFSET:x}\n",
        0xffff_ffff_8280_0000 + KERNEL_OFFSET
    )
}

/// The four inputs, as a capture stores them.
pub fn toy_kernel() -> InputBytes {
    InputBytes {
        btf: btf(),
        kallsyms: kallsyms().into_bytes(),
        vmcoreinfo: vmcoreinfo().into_bytes(),
        banner: BANNER.as_bytes().to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The toy kernel makes a table: the controller's and the workflow's tests rely on it.
    #[test]
    fn the_toy_kernel_makes_a_table() {
        let built = crate::table::build(&toy_kernel(), None, "test").unwrap();
        assert_eq!(built.manifest.summary.kernel_release, RELEASE);
        assert_eq!(built.manifest.summary.kernel_offset, KERNEL_OFFSET);
        assert_eq!(built.manifest.inputs.len(), 4);
        let isf = crate::decompress(&built.xz).unwrap();
        assert!(isf.enums.contains_key("pid_type"));
        assert!(
            isf.user_types["files_struct"]
                .fields
                .contains_key("handler")
        );
    }
}
