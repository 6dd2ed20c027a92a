//! `/proc/iomem`: which physical ranges are "System RAM".
//!
//! Only top-level entries count (nested lines such as "Kernel code" are parts of a RAM range).
//! Without CAP_SYS_ADMIN the kernel prints every address as zero; that is detected and reported,
//! never captured as ranges at address 0.
//!
//! The parser is our own, not `procfs`'s `Iomem`, because the image layout is decided from
//! these lines and `Iomem` is lenient where this has to be exact: it cuts a name at a second
//! `" : "` and reads `1000-1fff-77` as `1000-1fff`, so a malformed line can pass as
//! "System RAM"; it counts one leading space as top level (depth is spaces / 2); it fails on a
//! blank line; and any bad line fails the whole file as `Internal error: bug at (a procfs
//! source file) (please report this procfs bug)`, where the responder needs the line number
//! and its text.

pub use airf_evidence::memory::RamRange;

/// Why /proc/iomem gave no usable RAM ranges.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IomemError {
    /// All addresses are zero: the reader lacks CAP_SYS_ADMIN.
    #[error("/proc/iomem shows every address as 0: the agent lacks CAP_SYS_ADMIN (run it as root)")]
    AddressesHidden,
    /// No "System RAM" line at all.
    #[error("/proc/iomem lists no \"System RAM\" range")]
    NoRam,
    /// A line that is not `START-END : NAME`.
    #[error("/proc/iomem line {line}: cannot parse {text:?}")]
    Malformed {
        /// 1-based line number.
        line: usize,
        /// The line.
        text: String,
    },
    /// Ranges that overlap or are out of order.
    #[error("/proc/iomem System RAM ranges overlap or are out of order at {start:#x}")]
    Overlap {
        /// Start of the offending range.
        start: u64,
    },
}

/// Parses the top-level "System RAM" ranges of `/proc/iomem` text, in address order.
pub fn parse_system_ram(text: &str) -> Result<Vec<RamRange>, IomemError> {
    let mut ram: Vec<RamRange> = Vec::new();
    let mut any_nonzero = false;
    let mut any_line = false;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let malformed = || IomemError::Malformed {
            line: i + 1,
            text: line.chars().take(200).collect(),
        };
        let top_level = !line.starts_with(' ');
        let (span, name) = line.trim_start().split_once(" : ").ok_or_else(malformed)?;
        let (a, b) = span.split_once('-').ok_or_else(malformed)?;
        let start = u64::from_str_radix(a.trim(), 16).map_err(|_| malformed())?;
        let end = u64::from_str_radix(b.trim(), 16).map_err(|_| malformed())?;
        any_line = true;
        any_nonzero |= start != 0 || end != 0;
        if !top_level || name.trim() != "System RAM" {
            continue;
        }
        if end < start {
            return Err(malformed());
        }
        ram.push(RamRange { start, end });
    }
    if any_line && !any_nonzero {
        return Err(IomemError::AddressesHidden);
    }
    for pair in ram.windows(2) {
        if let [a, b] = pair
            && b.start <= a.end
        {
            return Err(IomemError::Overlap { start: b.start });
        }
    }
    if ram.is_empty() {
        return Err(IomemError::NoRam);
    }
    Ok(ram)
}

/// The physical range of one part of the kernel image (`Kernel code`, `Kernel rodata`, ...),
/// from the nested lines of `/proc/iomem`; None when the kernel does not list it or hides the
/// addresses.
pub fn kernel_section(text: &str, name: &str) -> Option<RamRange> {
    text.lines().find_map(|line| {
        let (span, n) = line.trim_start().split_once(" : ")?;
        if n.trim() != name {
            return None;
        }
        let (a, b) = span.split_once('-')?;
        let start = u64::from_str_radix(a.trim(), 16).ok()?;
        let end = u64::from_str_radix(b.trim(), 16).ok()?;
        (end > start).then_some(RamRange { start, end })
    })
}

/// Bytes of a LiME image of `ram`: every range plus a 32-byte header each.
pub fn lime_image_size(ram: &[RamRange]) -> u64 {
    ram.iter().fold(0u64, |acc, r| {
        acc.saturating_add(r.size())
            .saturating_add(super::lime_format::HEADER_SIZE as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const QEMU_512M: &str = include_str!("fixtures/iomem-6.1-qemu-512m.txt");
    const QEMU_512M_KASLR: &str = include_str!("fixtures/iomem-6.1-qemu-512m-kaslr.txt");

    #[test]
    fn real_guest() {
        let want = vec![
            RamRange {
                start: 0x1000,
                end: 0x9_fbff,
            },
            RamRange {
                start: 0x10_0000,
                end: 0x1ffd_ffff,
            },
        ];
        assert_eq!(parse_system_ram(QEMU_512M), Ok(want.clone()));
        assert_eq!(parse_system_ram(QEMU_512M_KASLR), Ok(want.clone()));
        // What the guest's LiME sent: 536,214,528 bytes.
        assert_eq!(lime_image_size(&want), 0x9_ec00 + 0x1fee_0000 + 64);
    }

    #[test]
    fn kernel_rodata_of_a_real_guest() {
        assert_eq!(
            kernel_section(QEMU_512M, "Kernel rodata"),
            Some(RamRange {
                start: 0x0200_0000,
                end: 0x028e_afff
            })
        );
        assert_eq!(
            kernel_section(QEMU_512M_KASLR, "Kernel rodata"),
            Some(RamRange {
                start: 0x0760_0000,
                end: 0x07ee_afff
            })
        );
        assert_eq!(kernel_section(QEMU_512M, "Kernel nothing"), None);
        // Hidden addresses (no CAP_SYS_ADMIN) are no range.
        assert_eq!(
            kernel_section("  00000000-00000000 : Kernel rodata\n", "Kernel rodata"),
            None
        );
    }

    #[test]
    fn zeroed_addresses_mean_no_cap_sys_admin() {
        let hidden: String = QEMU_512M
            .lines()
            .map(|l| {
                let indent = l.len() - l.trim_start().len();
                let (_, name) = l.split_once(" : ").unwrap();
                format!("{}00000000-00000000 : {name}\n", " ".repeat(indent))
            })
            .collect();
        assert_eq!(parse_system_ram(&hidden), Err(IomemError::AddressesHidden));
    }

    #[test]
    fn odd_inputs() {
        assert_eq!(parse_system_ram(""), Err(IomemError::NoRam));
        assert_eq!(
            parse_system_ram("00000000-00000fff : Reserved\n"),
            Err(IomemError::NoRam)
        );
        assert!(matches!(
            parse_system_ram("zz-10 : System RAM\n"),
            Err(IomemError::Malformed { line: 1, .. })
        ));
        assert!(matches!(
            parse_system_ram("1000-1fff : System RAM\n1800-2fff : System RAM\n"),
            Err(IomemError::Overlap { start: 0x1800 })
        ));
        // Nested System RAM (e.g. under a NUMA node or a PCI bus) is not top level.
        assert_eq!(
            parse_system_ram("1000-1fff : System RAM\n  1000-17ff : System RAM\n"),
            Ok(vec![RamRange {
                start: 0x1000,
                end: 0x1fff
            }])
        );
    }

    proptest! {
        #[test]
        fn never_panics(text in "[0-9a-f \\-:A-Za-z\n]{0,300}") {
            let _ = parse_system_ram(&text);
            let _ = kernel_section(&text, "Kernel rodata");
        }

        #[test]
        fn round_trips(mut bounds in proptest::collection::vec(any::<u64>(), 2..40)) {
            bounds.sort_unstable();
            bounds.dedup();
            let ranges: Vec<RamRange> = bounds
                .chunks_exact(2)
                .map(|p| RamRange { start: p[0], end: p[1] })
                .collect();
            let text: String = ranges
                .iter()
                .flat_map(|r| [format!("{:08x}-{:08x} : System RAM\n", r.start, r.end), "  00000001-00000002 : Kernel code\n".into()])
                .collect();
            if ranges.is_empty() {
                prop_assert!(parse_system_ram(&text).is_err());
            } else {
                prop_assert_eq!(parse_system_ram(&text), Ok(ranges));
            }
        }
    }
}
