//! `/proc/kallsyms`: the running kernel's symbols with their run-time (KASLR-shifted) addresses.
//!
//! Lines are `<hex address> <type letter> <name>[\t[<module>]]`. Module symbols are left out:
//! a symbol table describes vmlinux, and module addresses say nothing about it.
//!
//! With `kernel.kptr_restrict` set (or a reader without CAP_SYSLOG), every address reads as 0:
//! [`Kallsyms::zeroed`] tells that apart from a real table.

use thiserror::Error;

/// Why kallsyms text was refused.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum KallsymsError {
    #[error("kallsyms line {line}: {what}")]
    BadLine { line: usize, what: &'static str },
    #[error("kallsyms has no kernel symbols")]
    Empty,
}

/// One symbol of vmlinux.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelSymbol {
    pub name: String,
    pub address: u64,
    /// The `nm`-style type letter (`T`, `d`, `A`, ...).
    pub kind: char,
}

/// The vmlinux symbols of a kallsyms text, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kallsyms {
    pub symbols: Vec<KernelSymbol>,
    /// Lines of module symbols, skipped.
    pub module_symbols: usize,
}

impl Kallsyms {
    /// Parses kallsyms text. Names are kept as the kernel wrote them (bytes that are not UTF-8
    /// are replaced: kernel symbol names are C identifiers).
    pub fn parse(text: &[u8]) -> Result<Self, KallsymsError> {
        let mut symbols = Vec::new();
        let mut module_symbols = 0;
        for (index, raw) in text.split(|&b| b == b'\n').enumerate() {
            let line = index + 1;
            if raw.is_empty() {
                continue;
            }
            let raw = String::from_utf8_lossy(raw);
            let mut fields = raw.split_whitespace();
            let bad = |what| KallsymsError::BadLine { line, what };
            let address = fields.next().ok_or(bad("no address"))?;
            let kind = fields.next().ok_or(bad("no type letter"))?;
            let name = fields.next().ok_or(bad("no name"))?;
            if fields.next().is_some() {
                module_symbols += 1;
                continue;
            }
            if address.len() > 16 {
                return Err(bad("address longer than 64 bits"));
            }
            let address =
                u64::from_str_radix(address, 16).map_err(|_| bad("address is not hex"))?;
            let mut letters = kind.chars();
            let kind = match (letters.next(), letters.next()) {
                (Some(c), None) if c.is_ascii_alphabetic() || c == '?' => c,
                _ => return Err(bad("type is not one letter")),
            };
            symbols.push(KernelSymbol {
                name: name.to_owned(),
                address,
                kind,
            });
        }
        if symbols.is_empty() {
            return Err(KallsymsError::Empty);
        }
        Ok(Self {
            symbols,
            module_symbols,
        })
    }

    /// True when every address is 0: `kptr_restrict` or a reader without CAP_SYSLOG hid them.
    pub fn zeroed(&self) -> bool {
        self.symbols.iter().all(|s| s.address == 0)
    }

    /// The first symbol of this name.
    pub fn get(&self, name: &str) -> Option<&KernelSymbol> {
        self.symbols.iter().find(|s| s.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SAMPLE: &str = "ffffffff9a000000 T _text\n\
        0000000000000000 A fixed_percpu_data\n\
        ffffffff9c612940 D init_task\n\
        ffffffffc0a01000 t virtblk_probe\t[virtio_blk]\n";

    #[test]
    fn vmlinux_symbols_are_kept_and_module_symbols_counted() {
        let k = Kallsyms::parse(SAMPLE.as_bytes()).unwrap();
        assert_eq!(k.symbols.len(), 3);
        assert_eq!(k.module_symbols, 1);
        assert_eq!(k.get("init_task").unwrap().address, 0xffff_ffff_9c61_2940);
        assert_eq!(k.symbols[1].kind, 'A');
        assert!(!k.zeroed());
    }

    #[test]
    fn restricted_addresses_read_as_zeroed() {
        let k =
            Kallsyms::parse(b"0000000000000000 T _text\n0000000000000000 D init_task\n").unwrap();
        assert!(k.zeroed());
    }

    #[test]
    fn defects_are_named() {
        assert_eq!(Kallsyms::parse(b""), Err(KallsymsError::Empty));
        assert_eq!(
            Kallsyms::parse(b"zz T x\n"),
            Err(KallsymsError::BadLine {
                line: 1,
                what: "address is not hex"
            })
        );
        assert!(Kallsyms::parse(b"1 T\n").is_err());
        assert!(Kallsyms::parse(b"11111111111111111 T x\n").is_err());
        assert!(Kallsyms::parse(b"1 TT x\n").is_err());
    }

    proptest! {
        #[test]
        fn hostile_text_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Kallsyms::parse(&bytes);
        }

        #[test]
        fn written_symbols_read_back(syms in proptest::collection::vec((any::<u64>(), "[A-Za-z_][A-Za-z0-9_.]{0,30}", prop::sample::select(vec!['T','t','D','d','R','r','B','b','A','W'])), 1..50)) {
            let text: String = syms.iter().map(|(a, n, k)| format!("{a:016x} {k} {n}\n")).collect();
            let k = Kallsyms::parse(text.as_bytes()).unwrap();
            prop_assert_eq!(k.symbols.len(), syms.len());
            for (s, (a, n, c)) in k.symbols.iter().zip(&syms) {
                prop_assert_eq!((&s.name, s.address, s.kind), (n, *a, *c));
            }
        }
    }
}
