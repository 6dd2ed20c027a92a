//! Why the agent hashes with AWS-LC (`airf_agent::hash`) rather than the `sha2` crate: both
//! hash the same bytes in the same run, in the pipeline's chunk size, and the ratio is printed.
//! Run by `packaging/bench/hash.sh`:
//!
//! ```sh
//! cargo run --release -p airf-agent --example hash_bench -- [MiB] [rounds]
//! ```

use std::time::Instant;

use sha2::Digest as _;

/// The pipeline's default frame (and read) size.
const CHUNK: usize = 2 << 20;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mib: usize = args.next().map_or(Ok(1024), |a| a.parse())?;
    let rounds: usize = args.next().map_or(Ok(3), |a| a.parse())?;
    // Incompressible-looking bytes: SHA-256 speed does not depend on content, but this keeps
    // the buffer from being a page of zeros the OS shares.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let data: Vec<u8> = (0..mib << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let mb = data.len() as f64 / 1e6;

    // Best of `rounds` for each, interleaved so that both see the same machine state.
    let (mut ours, mut reference) = (f64::INFINITY, f64::INFINITY);
    let (mut ours_hex, mut reference_hex) = (String::new(), String::new());
    for _ in 0..rounds.max(1) {
        let t = Instant::now();
        let mut h = airf_agent::hash::Sha256::new();
        for c in data.chunks(CHUNK) {
            h.update(c);
        }
        ours_hex = hex::encode(h.finalize());
        ours = ours.min(t.elapsed().as_secs_f64());

        let t = Instant::now();
        let mut h = sha2::Sha256::new();
        for c in data.chunks(CHUNK) {
            h.update(c);
        }
        reference_hex = hex::encode(h.finalize());
        reference = reference.min(t.elapsed().as_secs_f64());
    }
    if ours_hex != reference_hex {
        return Err(format!("digests differ: aws-lc {ours_hex}, sha2 {reference_hex}").into());
    }
    println!("{mib} MiB in {} KiB chunks, best of {rounds}", CHUNK >> 10);
    println!("aws-lc (airf_agent::hash)  {:8.0} MB/s", mb / ours);
    println!("sha2 (portable baseline)   {:8.0} MB/s", mb / reference);
    println!("aws-lc / sha2 throughput: {:.2}", reference / ours);
    Ok(())
}
