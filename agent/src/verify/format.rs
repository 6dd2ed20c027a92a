//! Is the image in the format its manifest records: seekable zstd, `frames` frames of
//! `frame_size` bytes, and a seek table that describes them?
//!
//! Hashes alone accept a consistent rewrite (say a single-frame `zstd -19` file with the
//! manifest's hashes updated): the bytes would match, but the evidence is no longer what the
//! agent wrote, and readers that seek into it would fail. The frames measured while streaming
//! are compared with the manifest and with the seek table, entry by entry.

use super::Check;
use super::stream::{StreamFacts, TableFound};
use crate::manifest::Manifest;

/// The format the agent writes.
pub const FORMAT: &str = "zstd-seekable";

/// The largest seek table worth reading for `manifest`: one with checksums for each of its
/// frames, capped at 1 GiB. A larger table cannot match, so it is not kept in memory.
pub fn max_table(manifest: &Manifest) -> u64 {
    manifest
        .compressed
        .frames
        .saturating_mul(12)
        .saturating_add(17)
        .min(1 << 30)
}

/// The format checks, in the order people read them.
pub fn check(manifest: &Manifest, facts: &StreamFacts) -> Vec<Check> {
    let c = &manifest.compressed;
    let mut checks = vec![Check::compare("format", FORMAT, &c.format)];
    let table = match &facts.table {
        TableFound::Parsed { table, offset } => {
            checks.push(Check::passed(
                "seek table",
                format!("{} entries at offset {offset}", table.entries.len()),
            ));
            Some((table, *offset))
        }
        TableFound::Missing => {
            checks.push(Check::failed(
                "seek table",
                "a seek table after the last frame",
                "none: not the seekable format",
            ));
            None
        }
        TableFound::Invalid(why) => {
            checks.push(Check::failed(
                "seek table",
                "a seek table after the last frame",
                why,
            ));
            None
        }
    };
    checks.push(Check::compare("zstd frames", c.frames, facts.frames.len()));
    checks.push(Check::compare(
        "frame size",
        format!("{} bytes in every frame but the last", c.frame_size),
        frame_sizes(&facts.frames, c.frame_size),
    ));
    let Some((table, offset)) = table else {
        return checks;
    };
    checks.push(Check::compare(
        "seek table entries",
        c.frames,
        table.entries.len(),
    ));
    let mismatch = table
        .entries
        .iter()
        .zip(&facts.frames)
        .enumerate()
        .find(|(_, (e, f))| {
            u64::from(e.compressed) != f.compressed || u64::from(e.decompressed) != f.decompressed
        })
        .map(|(i, (e, f))| {
            format!(
                "entry {i}: the table says {} stored / {} raw bytes, the frame has {} / {}",
                e.compressed, e.decompressed, f.compressed, f.decompressed
            )
        });
    checks.push(Check::compare(
        "seek table vs frames",
        "each entry the sizes of its frame",
        mismatch.unwrap_or_else(|| "each entry the sizes of its frame".into()),
    ));
    checks.push(Check::compare(
        "seek table stored sum",
        offset,
        table.compressed_total(),
    ));
    checks.push(Check::compare(
        "seek table raw sum",
        manifest.raw.size,
        table.decompressed_total(),
    ));
    checks
}

/// The same words as the expectation when every frame but the last holds `frame_size` bytes
/// (and the last 1 to `frame_size`), else the first frame that does not.
fn frame_sizes(frames: &[super::stream::Frame], frame_size: u64) -> String {
    let last = frames.len().saturating_sub(1);
    let bad = frames.iter().enumerate().find(|(i, f)| {
        if *i == last {
            f.decompressed == 0 || f.decompressed > frame_size
        } else {
            f.decompressed != frame_size
        }
    });
    match bad {
        None => format!("{frame_size} bytes in every frame but the last"),
        Some((i, f)) => format!(
            "frame {i} of {} holds {} bytes",
            frames.len(),
            f.decompressed
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seekable::parse::{Entry, ParsedSeekTable};
    use crate::verify::stream::Frame;

    fn manifest(frames: u64, frame_size: u64, raw: u64) -> Manifest {
        let mut m: Manifest = serde_json::from_slice(include_bytes!(
            "../../evidence/src/fixtures/manifest-1-disk.json"
        ))
        .unwrap();
        m.compressed.frames = frames;
        m.compressed.frame_size = frame_size;
        m.raw.size = raw;
        m
    }

    fn facts(frames: &[(u64, u64)], table: Option<&[(u32, u32)]>) -> StreamFacts {
        let frames: Vec<Frame> = frames
            .iter()
            .map(|&(compressed, decompressed)| Frame {
                compressed,
                decompressed,
            })
            .collect();
        let offset = frames.iter().map(|f| f.compressed).sum();
        StreamFacts {
            stored_size: 0,
            stored_sha256: String::new(),
            raw_size: frames.iter().map(|f| f.decompressed).sum(),
            raw_sha256: String::new(),
            frames,
            table: table.map_or(TableFound::Missing, |t| TableFound::Parsed {
                table: ParsedSeekTable {
                    entries: t
                        .iter()
                        .map(|&(compressed, decompressed)| Entry {
                            compressed,
                            decompressed,
                            checksum: None,
                        })
                        .collect(),
                },
                offset,
            }),
            decode_error: None,
        }
    }

    fn failed(checks: &[Check]) -> Vec<&str> {
        checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| c.check.as_str())
            .collect()
    }

    #[test]
    fn the_agents_format_passes() {
        let f = facts(
            &[(50, 100), (50, 100), (20, 30)],
            Some(&[(50, 100), (50, 100), (20, 30)]),
        );
        let checks = check(&manifest(3, 100, 230), &f);
        assert!(failed(&checks).is_empty(), "{checks:?}");
        assert_eq!(checks.len(), 8);
    }

    #[test]
    fn a_single_frame_file_fails() {
        // A manifest of one frame (a small image) and a single-frame rewrite: the count agrees,
        // the missing table does not.
        let checks = check(&manifest(1, 100, 30), &facts(&[(20, 30)], None));
        assert_eq!(failed(&checks), ["seek table"]);
        // A larger image rewritten as one frame: count and frame size disagree too.
        let checks = check(&manifest(3, 100, 230), &facts(&[(90, 230)], None));
        assert_eq!(failed(&checks), ["seek table", "zstd frames", "frame size"]);
    }

    #[test]
    fn a_table_that_lies_fails() {
        let frames = [(50, 100), (50, 100), (20, 30)];
        // Wrong frame size in an entry (sums kept).
        let t = [(50, 90), (50, 110), (20, 30)];
        let checks = check(&manifest(3, 100, 230), &facts(&frames, Some(&t)));
        assert_eq!(failed(&checks), ["seek table vs frames"]);
        // One entry missing.
        let t = [(50, 100), (70, 130)];
        let checks = check(&manifest(3, 100, 230), &facts(&frames, Some(&t)));
        assert_eq!(
            failed(&checks),
            ["seek table entries", "seek table vs frames"]
        );
        // Sums off.
        let t = [(50, 100), (50, 100), (21, 31)];
        let checks = check(&manifest(3, 100, 230), &facts(&frames, Some(&t)));
        assert_eq!(
            failed(&checks),
            [
                "seek table vs frames",
                "seek table stored sum",
                "seek table raw sum"
            ]
        );
    }

    #[test]
    fn frames_of_the_wrong_size_or_count_fail() {
        let frames = [(50, 100), (50, 80), (20, 50)];
        let checks = check(
            &manifest(3, 100, 230),
            &facts(&frames, Some(&[(50, 100), (50, 80), (20, 50)])),
        );
        assert_eq!(failed(&checks), ["frame size"]);
        assert!(
            checks
                .iter()
                .any(|c| c.actual == "frame 1 of 3 holds 80 bytes")
        );
        let frames = [(50, 100), (50, 100), (20, 30)];
        let checks = check(
            &manifest(4, 100, 230),
            &facts(&frames, Some(&frames.map(|(a, b)| (a as u32, b as u32)))),
        );
        assert_eq!(failed(&checks), ["zstd frames", "seek table entries"]);
        let mut m = manifest(3, 100, 230);
        m.compressed.format = "zstd".into();
        assert_eq!(
            failed(&check(
                &m,
                &facts(&frames, Some(&[(50, 100), (50, 100), (20, 30)]))
            )),
            ["format"]
        );
    }

    #[test]
    fn an_empty_image_is_just_a_table() {
        let checks = check(&manifest(0, 100, 0), &facts(&[], Some(&[])));
        assert!(failed(&checks).is_empty(), "{checks:?}");
    }
}
