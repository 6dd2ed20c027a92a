//! Builds a symbol table from four files: `isf_from_files BTF KALLSYMS VMCOREINFO PROC_VERSION OUT.json.xz`.
//! The agent's `symbols` command does this from a stored memory image; this is for kernels at hand.

use anyhow::{Context, Result};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [btf, kallsyms, vmcoreinfo, banner, out] = args.as_slice() else {
        anyhow::bail!("usage: isf_from_files BTF KALLSYMS VMCOREINFO PROC_VERSION OUT.json.xz");
    };
    let read = |p: &String| std::fs::read(p).with_context(|| format!("reading {p}"));
    let (b, k, v, p) = (
        read(btf)?,
        read(kallsyms)?,
        read(vmcoreinfo)?,
        read(banner)?,
    );
    let started = std::time::Instant::now();
    let (isf, summary) = airf_isf::generate(&airf_isf::Inputs {
        btf: airf_isf::Input {
            name: btf,
            bytes: &b,
        },
        kallsyms: airf_isf::Input {
            name: kallsyms,
            bytes: &k,
        },
        vmcoreinfo: airf_isf::Input {
            name: vmcoreinfo,
            bytes: &v,
        },
        banner: airf_isf::Input {
            name: banner,
            bytes: &p,
        },
    })?;
    let built = started.elapsed();
    let xz = airf_isf::compress(&isf)?;
    std::fs::write(out, &xz).with_context(|| format!("writing {out}"))?;
    eprintln!(
        "{summary:?}\nbuilt in {built:?}, compressed to {} bytes in {:?} total",
        xz.len(),
        started.elapsed()
    );
    Ok(())
}
