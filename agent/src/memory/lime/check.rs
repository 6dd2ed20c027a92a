//! Whether a LiME module may be loaded: the one the responder named, built for this kernel.
//!
//! The hash comes first: nothing of a file whose SHA-256 differs from `--lime-sha256` is
//! parsed, let alone loaded. Then the `.modinfo` vermagic must name the running kernel's
//! release, because a module built for another kernel is refused by the kernel at best and
//! oopses it at worst. The module file is untrusted bytes: the ELF and `.modinfo` parsers
//! return errors, never panic.

use std::path::Path;

use goblin::elf::Elf;

use super::error::LimeError;
use airf_evidence::memory::LimeModuleFacts;

/// Parses the NUL-separated `key=value` strings of a `.modinfo` section.
pub fn parse_modinfo(section: &[u8]) -> Vec<(String, String)> {
    section
        .split(|&b| b == 0)
        .filter_map(|entry| {
            let s = std::str::from_utf8(entry).ok()?;
            let (k, v) = s.split_once('=')?;
            Some((k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// Reads `.modinfo` from a kernel module (an ELF relocatable object).
pub fn read_modinfo(ko: &[u8]) -> Result<Vec<(String, String)>, String> {
    let elf = Elf::parse(ko).map_err(|e| e.to_string())?;
    let sh = elf
        .section_headers
        .iter()
        .find(|s| elf.shdr_strtab.get_at(s.sh_name) == Some(".modinfo"))
        .ok_or("no .modinfo section")?;
    let start = usize::try_from(sh.sh_offset).map_err(|e| e.to_string())?;
    let len = usize::try_from(sh.sh_size).map_err(|e| e.to_string())?;
    let bytes = start
        .checked_add(len)
        .and_then(|end| ko.get(start..end))
        .ok_or(".modinfo lies outside the file")?;
    Ok(parse_modinfo(bytes))
}

/// The kernel release a vermagic names: its first word (`6.1.0-57-amd64 SMP preempt …`).
pub fn vermagic_release(vermagic: &str) -> &str {
    vermagic.split_whitespace().next().unwrap_or("")
}

/// Checks a module's bytes before loading: hash first, then vermagic against `running`.
pub fn check_module(
    path: &Path,
    ko: &[u8],
    expected_sha256: &str,
    running: &str,
) -> Result<LimeModuleFacts, LimeError> {
    let actual = hex::encode(crate::hash::Sha256::digest(ko));
    let expected = expected_sha256.trim().to_ascii_lowercase();
    if actual != expected {
        return Err(LimeError::Hash {
            path: path.to_owned(),
            actual,
            expected,
        });
    }
    let info = read_modinfo(ko).map_err(|detail| LimeError::NotModule {
        path: path.to_owned(),
        detail,
    })?;
    let get = |k: &str| {
        info.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let vermagic = get("vermagic").ok_or_else(|| LimeError::NotModule {
        path: path.to_owned(),
        detail: ".modinfo has no vermagic".into(),
    })?;
    let module_release = vermagic_release(&vermagic).to_owned();
    if module_release != running {
        return Err(LimeError::Vermagic {
            path: path.to_owned(),
            vermagic,
            module_release,
            running: running.to_owned(),
        });
    }
    Ok(LimeModuleFacts {
        path: path.to_owned(),
        sha256: actual,
        vermagic,
        version: get("version"),
        name: get("name").unwrap_or_else(|| "lime".into()),
        parameters: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn modinfo_and_vermagic() {
        let info = parse_modinfo(b"version=1.9.1\0license=GPL\0\0name=lime\0vermagic=6.1.0-57-amd64 SMP preempt mod_unload modversions \0");
        assert_eq!(info.len(), 4);
        let vm = info
            .iter()
            .find(|(k, _)| k == "vermagic")
            .map(|(_, v)| v.as_str());
        assert_eq!(vm.map(vermagic_release), Some("6.1.0-57-amd64"));
        assert!(matches!(
            check_module(
                Path::new("x.ko"),
                b"junk",
                &"00".repeat(32),
                "6.1.0-57-amd64"
            ),
            Err(LimeError::Hash { .. })
        ));
        let sha = hex::encode(crate::hash::Sha256::digest(b"junk"));
        assert!(matches!(
            check_module(Path::new("x.ko"), b"junk", &sha, "6.1.0-57-amd64"),
            Err(LimeError::NotModule { .. })
        ));
    }

    proptest! {
        #[test]
        fn modinfo_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_modinfo(&bytes);
            let _ = read_modinfo(&bytes);
        }
    }
}
