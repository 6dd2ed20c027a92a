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
    let cpu_before = cpu_seconds()?;
    let built = airf_isf::table::build(&inputs, None, "symbol_table_time")?;
    let cpu = cpu_seconds()? - cpu_before;
    let seconds = started.elapsed().as_secs_f64();
    let peak = peak_rss_kib()? / 1024;
    let json = airf_isf::decompress(&built.xz)?;
    let json_bytes = serde_json::to_vec(&json)?.len();
    println!(
        "built in {seconds:.2} s ({cpu:.2} s of CPU): {} bytes .json.xz, {json_bytes} bytes JSON; {} user types, {} symbols; peak RSS {peak} MiB",
        built.xz.len(),
        built.manifest.summary.user_types,
        built.manifest.summary.symbols,
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

/// User and system CPU time of this process so far (/proc/self/stat, clock ticks of 1/100 s).
fn cpu_seconds() -> Result<f64, Box<dyn std::error::Error>> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the command name (which may hold spaces), from field 3 on.
    let rest = stat.rsplit_once(')').ok_or("no ) in /proc/self/stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<f64, Box<dyn std::error::Error>> {
        Ok(fields
            .get(i)
            .ok_or("short /proc/self/stat")?
            .parse::<f64>()?)
    };
    // utime and stime are fields 14 and 15: indexes 11 and 12 here.
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}
