//! Times the Symbols step's CPU work on a real kernel's inputs, as the controller's binary does
//! it: `symbol_table_time BTF KALLSYMS VMCOREINFO PROC_VERSION`. Prints the seconds, the table's
//! sizes and the process's peak RSS; the Lambda's TimeoutSeconds and MemorySize come from these
//! figures (controller/README.md). Run it pinned to one CPU (`taskset -c 0`): a Lambda of
//! 1,769 MB has one vCPU.

use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [btf, kallsyms, vmcoreinfo, banner] = args.as_slice() else {
        return Err("usage: symbol_table_time BTF KALLSYMS VMCOREINFO PROC_VERSION".into());
    };
    let inputs = airf_isf::table::InputBytes {
        btf: std::fs::read(btf)?,
        kallsyms: std::fs::read(kallsyms)?,
        vmcoreinfo: std::fs::read(vmcoreinfo)?,
        banner: std::fs::read(banner)?,
    };
    let started = Instant::now();
    let built = airf_isf::table::build(&inputs, None, "symbol_table_time")?;
    let seconds = started.elapsed().as_secs_f64();
    let json = airf_isf::decompress(&built.xz)?;
    let json_bytes = serde_json::to_vec(&json)?.len();
    println!(
        "built in {seconds:.2} s: {} bytes .json.xz, {json_bytes} bytes JSON; {} user types, {} symbols; peak RSS {} MiB",
        built.xz.len(),
        built.manifest.summary.user_types,
        built.manifest.summary.symbols,
        peak_rss_kib()? / 1024
    );
    Ok(())
}

/// VmHWM of /proc/self/status, KiB.
fn peak_rss_kib() -> Result<u64, Box<dyn std::error::Error>> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .ok_or("no VmHWM in /proc/self/status")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .ok_or("VmHWM without a value")?
        .parse()?)
}
