//! How much the memory content check costs beside SHA-256, on the same bytes in the same run.
//!
//! The check (zero pages and the banner search, `airf_agent::memory::content`) runs on the
//! reader thread while SHA-256 runs on its own: the capture slows down only if the check is
//! slower than the hash. Run by `packaging/bench/content.sh`:
//!
//! ```sh
//! cargo run --release -p airf-agent --example content_scan_bench -- [MiB] [zero%]
//! ```

use std::time::Instant;

use airf_agent::hash::Sha256;
use airf_agent::memory::content::ContentScanner;
use airf_agent::memory::iomem::RamRange;
use airf_agent::memory::lime_format::{HEADER_SIZE, LimeHeader};

const BANNER: &str = "Linux version 6.1.0-57-amd64 (debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0, GNU ld (GNU Binutils for Debian) 2.40) #1 SMP PREEMPT_DYNAMIC Debian 6.1.192-3 (2026-10-01)";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mib: u64 = args.next().map_or(Ok(1024), |a| a.parse())?;
    let zero_pct: u64 = args.next().map_or(Ok(60), |a| a.parse())?;
    let range = RamRange {
        start: 1 << 20,
        end: (1 << 20) + (mib << 20) - 1,
    };
    let layout = [range];
    // A LiME image: text-like data in (100 - zero%) of the pages, the banner once at the end.
    let mut image = Vec::with_capacity(HEADER_SIZE + (mib << 20) as usize);
    image.extend_from_slice(
        &LimeHeader {
            start: range.start,
            end: range.end,
        }
        .encode(),
    );
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for page in 0..(mib << 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if x % 100 < zero_pct {
            image.resize(image.len() + 4096, 0);
        } else {
            let text = b"Linux kernel memory page ";
            image.extend((0..4096u64).map(|i| {
                text.get(((i + page) % 25) as usize)
                    .copied()
                    .unwrap_or(b' ')
            }));
        }
    }
    let at = image.len() - 4096;
    if let Some(dst) = image.get_mut(at..at + BANNER.len()) {
        dst.copy_from_slice(BANNER.as_bytes());
    }
    let chunk = 2 << 20;

    let t = Instant::now();
    let mut h = Sha256::new();
    for c in image.chunks(chunk) {
        h.update(c);
    }
    let digest = h.finalize();
    let sha = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let mut s = ContentScanner::new(&layout, BANNER, None);
    for c in image.chunks(chunk) {
        s.feed(c);
    }
    let content = s.finish();
    let scan = t.elapsed().as_secs_f64();

    let mb = image.len() as f64 / 1e6;
    println!(
        "image {mib} MiB, {zero_pct}% zero pages (found {} of {} zero, banner x{})",
        content.zero_pages, content.pages, content.banner_count
    );
    println!(
        "sha256        {:8.0} MB/s  ({})",
        mb / sha,
        hex::encode(digest)
    );
    println!("content scan  {:8.0} MB/s", mb / scan);
    println!("scan time / sha256 time: {:.3}", scan / sha);
    Ok(())
}
