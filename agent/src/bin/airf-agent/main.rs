//! The `airf-agent` command: argument parsing and output; the work is in the library.

mod common;
mod disk;
mod fetch;
mod memory;
mod snapshot;
mod symbols;
mod triage;
mod verify;

use clap::{Parser, Subcommand};

/// With the `mimalloc` feature, mimalloc replaces musl's allocator in the static build
/// (packaging/bench/allocator.sh measures whether that matters).
#[cfg(all(feature = "mimalloc", target_env = "musl"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Forensic acquisition agent: disks (and memory) to S3 as seekable zstd, with SHA-256 and a
/// manifest.
#[derive(Debug, Parser)]
#[command(name = "airf-agent", version, about, long_about = None, after_help = common::EXIT_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Acquire block devices or disk image files.
    Disk(disk::DiskArgs),
    /// Acquire physical memory (/proc/kcore or LiME) as a LiME-format image.
    Memory(memory::MemoryArgs),
    /// Acquire EBS snapshots through the EBS direct APIs (no volume, no instance).
    Snapshot(snapshot::SnapshotArgs),
    /// Collect the host's volatile state (processes, sockets, modules, logins, persistence
    /// files) in seconds, before memory and disks.
    Triage(triage::TriageArgs),
    /// Check stored evidence against its manifest.
    Verify(verify::VerifyArgs),
    /// Build the Volatility 3 symbol table of a stored memory image (from its BTF and kallsyms).
    Symbols(symbols::SymbolsArgs),
    /// Copy a stored memory image, its artifacts and symbol table here, verify and unpack them,
    /// and print the Volatility 3 command.
    Fetch(fetch::FetchArgs),
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() {
                airf_agent::report::exit::USAGE
            } else {
                0
            };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    common::init_logging();
    let code = match cli.command {
        Command::Disk(args) => disk::run(args),
        Command::Memory(args) => memory::run(args),
        Command::Snapshot(args) => snapshot::run(args),
        Command::Triage(args) => triage::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Symbols(args) => symbols::run(args),
        Command::Fetch(args) => fetch::run(args),
    };
    std::process::exit(code);
}
