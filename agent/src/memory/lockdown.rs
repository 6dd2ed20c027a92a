//! The kernel lockdown mode, which decides which memory source can work at all: *integrity*
//! refuses unsigned modules (LiME) but allows /proc/kcore; *confidentiality* refuses both.
//! Naming it turns "permission denied" into a cause a responder can act on.

/// Where the kernel shows it (securityfs), e.g. `none [integrity] confidentiality`.
pub const LOCKDOWN: &str = "/sys/kernel/security/lockdown";

/// The selected mode from the securityfs text: the bracketed word (`none`, `integrity`,
/// `confidentiality`), or None when the text has no single bracketed word.
pub fn parse(text: &str) -> Option<String> {
    let mut selected = text
        .split_whitespace()
        .filter_map(|w| w.strip_prefix('[')?.strip_suffix(']'))
        .filter(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_lowercase()));
    let mode = selected.next()?;
    selected.next().is_none().then(|| mode.to_owned())
}

/// The running kernel's lockdown mode; None when securityfs or the LSM is absent.
pub fn current() -> Option<String> {
    parse(&std::fs::read_to_string(LOCKDOWN).ok()?)
}

/// What a lockdown mode means for the memory sources, for error messages.
pub fn consequence(mode: &str) -> Option<&'static str> {
    match mode {
        "integrity" => Some(
            "kernel lockdown is 'integrity': unsigned modules such as LiME are refused; /proc/kcore is allowed",
        ),
        "confidentiality" => Some(
            "kernel lockdown is 'confidentiality': /proc/kcore and unsigned modules are refused; memory cannot be acquired from inside this boot (use a hypervisor-level capture)",
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn real_texts() {
        assert_eq!(
            parse("[none] integrity confidentiality\n").as_deref(),
            Some("none")
        );
        assert_eq!(
            parse("none [integrity] confidentiality\n").as_deref(),
            Some("integrity")
        );
        assert_eq!(
            parse("none integrity [confidentiality]").as_deref(),
            Some("confidentiality")
        );
        assert_eq!(parse(""), None);
        assert_eq!(parse("none integrity"), None);
        assert_eq!(parse("[none] [integrity]"), None);
        assert_eq!(parse("[]"), None);
        assert!(consequence("none").is_none());
        assert!(consequence("confidentiality").is_some_and(|c| c.contains("/proc/kcore")));
    }

    proptest! {
        #[test]
        fn never_panics_and_returns_a_word(text in "\\PC{0,80}") {
            if let Some(m) = parse(&text) {
                let bracketed = format!("[{m}]");
                prop_assert!(!m.is_empty() && text.contains(&bracketed));
            }
        }
    }
}
