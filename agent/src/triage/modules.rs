//! Kernel modules from both `/proc/modules` and `/sys/module`: a rootkit that unlinks itself
//! from the module list often stays in sysfs (or the other way round), so each module says
//! where it was seen. And the kernel's taint flags, decoded.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::log::Log;

/// One module.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ModuleRecord {
    pub name: String,
    pub in_proc_modules: bool,
    /// Has `/sys/module/<name>/initstate` (a loaded module; built-ins have none).
    pub in_sys_module: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refcount: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub used_by: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// `/sys/module/<name>/taint` (e.g. `OE`: out-of-tree, unsigned).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub taint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initstate: Option<String>,
}

/// The kernel's taint.
#[derive(Debug, Clone, Serialize)]
pub struct KernelTaint {
    /// `/proc/sys/kernel/tainted`.
    pub tainted: u64,
    /// One entry per set bit, e.g. `O: out-of-tree module loaded`.
    pub flags: Vec<String>,
}

/// Taint bits, in the kernel's order (Documentation/admin-guide/tainted-kernels.rst).
const TAINT: &[(char, &str)] = &[
    ('P', "proprietary module loaded"),
    ('F', "module force loaded"),
    ('S', "kernel running on an out of specification system"),
    ('R', "module force unloaded"),
    ('M', "processor reported a Machine Check Exception"),
    ('B', "bad page referenced or unexpected page flags"),
    ('U', "taint requested by userspace"),
    ('D', "kernel died recently (OOPS or BUG)"),
    ('A', "ACPI table overridden by user"),
    ('W', "kernel issued a warning"),
    ('C', "staging driver loaded"),
    ('I', "workaround for a platform firmware bug applied"),
    ('O', "out-of-tree module loaded"),
    ('E', "unsigned module loaded"),
    ('L', "soft lockup occurred"),
    ('K', "kernel live patched"),
    ('X', "auxiliary taint (distribution defined)"),
    ('T', "kernel built with the struct randomization plugin"),
    ('N', "an in-kernel test has been run"),
    ('J', "userspace used a mutating debug operation in fwctl"),
];

/// Decodes `/proc/sys/kernel/tainted`.
pub fn decode_taint(value: u64) -> Vec<String> {
    (0..64)
        .filter(|bit| value & (1u64 << bit) != 0)
        .map(|bit| match TAINT.get(bit) {
            Some((c, what)) => format!("{c}: {what}"),
            None => format!("bit {bit}: unknown to this agent"),
        })
        .collect()
}

/// One line of `/proc/modules`: name size refcount used_by state address.
pub fn parse_proc_modules_line(line: &str) -> Option<ModuleRecord> {
    let f: Vec<&str> = line.split_ascii_whitespace().collect();
    Some(ModuleRecord {
        name: (*f.first()?).to_owned(),
        in_proc_modules: true,
        size: f.get(1).and_then(|s| s.parse().ok()),
        refcount: f.get(2).and_then(|s| s.parse().ok()),
        used_by: f
            .get(3)
            .map(|u| {
                u.split(',')
                    .filter(|m| !m.is_empty() && *m != "-")
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
        state: f.get(4).map(|s| (*s).to_owned()),
        address: f.get(5).map(|s| (*s).to_owned()),
        // Taint letters follow the address in parentheses, e.g. "(OE)".
        taint: f
            .get(6)
            .map(|t| t.trim_matches(|c| c == '(' || c == ')').to_owned()),
        ..ModuleRecord::default()
    })
}

/// Merges `/proc/modules` (text) with the module directories under `sys_module`.
pub fn collect(proc_modules: Option<&str>, sys_module: &Path, log: &mut Log) -> Vec<ModuleRecord> {
    let mut all: BTreeMap<String, ModuleRecord> = BTreeMap::new();
    for m in proc_modules
        .unwrap_or_default()
        .lines()
        .filter_map(parse_proc_modules_line)
    {
        all.insert(m.name.clone(), m);
    }
    match std::fs::read_dir(sys_module) {
        Ok(dir) => {
            for entry in dir.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let path = entry.path();
                let Ok(initstate) = std::fs::read_to_string(path.join("initstate")) else {
                    continue; // built into the kernel
                };
                let m = all.entry(name.clone()).or_insert_with(|| ModuleRecord {
                    name,
                    ..ModuleRecord::default()
                });
                m.in_sys_module = true;
                m.initstate = Some(initstate.trim().to_owned());
                if let Ok(t) = std::fs::read_to_string(path.join("taint")) {
                    let t = t.trim();
                    if !t.is_empty() {
                        m.taint = Some(t.to_owned());
                    }
                }
            }
        }
        Err(e) => log.unreadable(sys_module.to_string_lossy().as_ref(), &e),
    }
    all.into_values().collect()
}

/// Modules seen in only one of the two lists, in words.
pub fn mismatches(modules: &[ModuleRecord]) -> Vec<String> {
    modules
        .iter()
        .filter(|m| m.in_proc_modules != m.in_sys_module)
        .map(|m| {
            if m.in_proc_modules {
                format!("{}: in /proc/modules, not in /sys/module", m.name)
            } else {
                format!("{}: in /sys/module, not in /proc/modules", m.name)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn proc_modules_lines() {
        let m = parse_proc_modules_line("lime 24576 0 - Live 0xffffffffc0a00000 (OE)").unwrap();
        assert_eq!(m.name, "lime");
        assert_eq!(m.size, Some(24576));
        assert_eq!(m.taint.as_deref(), Some("OE"));
        let m = parse_proc_modules_line("virtio_blk 24576 2 a,b, Live 0x0000000000000000").unwrap();
        assert_eq!(m.used_by, vec!["a", "b"]);
        assert!(parse_proc_modules_line("").is_none());
    }

    #[test]
    fn taint_bits() {
        assert_eq!(decode_taint(0), Vec::<String>::new());
        let f = decode_taint((1 << 12) | (1 << 13));
        assert_eq!(
            f,
            vec!["O: out-of-tree module loaded", "E: unsigned module loaded"]
        );
        assert_eq!(decode_taint(1 << 40), vec!["bit 40: unknown to this agent"]);
    }

    /// A module hidden from /proc/modules but present in sysfs, and the other way round.
    #[test]
    fn a_module_in_one_list_only_is_flagged() {
        let sys = tempfile::tempdir().unwrap();
        for (name, loaded) in [("hidden", true), ("both", true), ("builtin", false)] {
            std::fs::create_dir(sys.path().join(name)).unwrap();
            if loaded {
                std::fs::write(sys.path().join(name).join("initstate"), "live\n").unwrap();
            }
        }
        let proc = "both 1 0 - Live 0x0\nunlinked 1 0 - Live 0x0\n";
        let mut log = Log::default();
        let all = collect(Some(proc), sys.path(), &mut log);
        assert_eq!(
            mismatches(&all),
            vec![
                "hidden: in /sys/module, not in /proc/modules",
                "unlinked: in /proc/modules, not in /sys/module"
            ]
        );
        assert!(!all.iter().any(|m| m.name == "builtin"));
    }

    proptest! {
        #[test]
        fn the_line_parser_never_panics(line in "\\PC{0,200}") {
            let _ = parse_proc_modules_line(&line);
        }
    }
}
