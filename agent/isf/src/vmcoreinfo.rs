//! VMCOREINFO: `KEY=value` lines the kernel writes for crash tools (the `/proc/kcore` note).
//!
//! It carries the release (`OSRELEASE`), the KASLR offset (`KERNELOFFSET`, hex) and the
//! run-time addresses of a few symbols (`SYMBOL(name)=hex`), which tie kallsyms to the same
//! boot.

use std::collections::BTreeMap;

use thiserror::Error;

/// Why VMCOREINFO text was refused.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum VmcoreinfoError {
    #[error("VMCOREINFO has no {0} line")]
    Missing(&'static str),
    #[error("VMCOREINFO {key}={value:?} is not a hex number")]
    NotHex { key: String, value: String },
}

/// Parsed VMCOREINFO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vmcoreinfo {
    entries: BTreeMap<String, String>,
}

fn hex(key: &str, value: &str) -> Result<u64, VmcoreinfoError> {
    u64::from_str_radix(value.trim_start_matches("0x"), 16).map_err(|_| VmcoreinfoError::NotHex {
        key: key.to_owned(),
        value: value.chars().take(40).collect(),
    })
}

impl Vmcoreinfo {
    /// Parses the text; lines without `=` are ignored (the note may end in NULs or padding).
    pub fn parse(text: &[u8]) -> Self {
        let text = String::from_utf8_lossy(text);
        let entries = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        Self { entries }
    }

    /// The raw value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.get(key).map(String::as_str)
    }

    /// `OSRELEASE`, the kernel release (`uname -r`).
    pub fn release(&self) -> Result<&str, VmcoreinfoError> {
        self.get("OSRELEASE")
            .ok_or(VmcoreinfoError::Missing("OSRELEASE"))
    }

    /// `KERNELOFFSET`: how far KASLR moved the kernel image from its link-time address.
    pub fn kernel_offset(&self) -> Result<u64, VmcoreinfoError> {
        let v = self
            .get("KERNELOFFSET")
            .ok_or(VmcoreinfoError::Missing("KERNELOFFSET"))?;
        hex("KERNELOFFSET", v)
    }

    /// Every `SYMBOL(name)=address` (run-time addresses).
    pub fn symbols(&self) -> Result<Vec<(&str, u64)>, VmcoreinfoError> {
        self.entries
            .iter()
            .filter_map(|(k, v)| {
                let name = k.strip_prefix("SYMBOL(")?.strip_suffix(')')?;
                Some(hex(k, v).map(|a| (name, a)))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_release_offset_and_symbols() {
        let v = Vmcoreinfo::parse(
            b"OSRELEASE=6.1.0-41-amd64\nPAGESIZE=4096\nSYMBOL(swapper_pg_dir)=ffffffff9d80a000\nKERNELOFFSET=1c000000\n\0\0",
        );
        assert_eq!(v.release(), Ok("6.1.0-41-amd64"));
        assert_eq!(v.kernel_offset(), Ok(0x1c00_0000));
        assert_eq!(
            v.symbols(),
            Ok(vec![("swapper_pg_dir", 0xffff_ffff_9d80_a000)])
        );
    }

    #[test]
    fn missing_and_bad_values_are_named() {
        let v = Vmcoreinfo::parse(b"KERNELOFFSET=zz\n");
        assert_eq!(v.release(), Err(VmcoreinfoError::Missing("OSRELEASE")));
        assert!(matches!(
            v.kernel_offset(),
            Err(VmcoreinfoError::NotHex { .. })
        ));
        assert_eq!(
            Vmcoreinfo::parse(b"").kernel_offset(),
            Err(VmcoreinfoError::Missing("KERNELOFFSET"))
        );
    }

    proptest! {
        #[test]
        fn hostile_text_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let v = Vmcoreinfo::parse(&bytes);
            let _ = (v.release(), v.kernel_offset(), v.symbols());
        }
    }
}
