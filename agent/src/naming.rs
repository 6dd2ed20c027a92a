//! The names that become S3 keys and directories: case ids, key prefixes and run folders.
//!
//! Evidence must be findable by exactly the id the responder typed, so a case id outside the
//! safe set is refused, never rewritten; and a key must be one `aws s3 sync` can download, so
//! `.`, `..` and empty segments are refused too.

/// Longest case id accepted (the SSM documents' `CaseId` pattern says the same).
pub const MAX_CASE_ID: usize = 128;

/// The rule, as the error message and the documentation state it.
pub const CASE_ID_RULE: &str =
    "1-128 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit (e.g. IR-2026-0042)";

/// A name that cannot be used for evidence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// `--case` outside the safe set.
    #[error(
        "--case {0:?} is not a usable case id: use {CASE_ID_RULE}; it is never rewritten, so that the evidence is found by the id you typed"
    )]
    Case(String),
    /// A key prefix with a traversal or empty segment.
    #[error(
        "the S3 prefix {prefix:?} has a {what} segment; S3 would store it as a literal key that `aws s3 sync` refuses to download: give a prefix of plain names separated by single '/', e.g. s3://bucket/evidence/"
    )]
    Prefix {
        /// The prefix given.
        prefix: String,
        /// Which: `". segment"`, `".. segment"`, `"empty segment"`, `"control character"`.
        what: &'static str,
    },
}

/// Checks a case id against [`CASE_ID_RULE`].
pub fn check_case_id(case: &str) -> Result<(), NameError> {
    let mut chars = case.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if first_ok && rest_ok && case.len() <= MAX_CASE_ID {
        Ok(())
    } else {
        Err(NameError::Case(case.to_owned()))
    }
}

/// Checks an S3 key prefix as given after the bucket (`s3://bucket/<prefix>`): a trailing `/`
/// is allowed, nothing else empty, no `.` or `..` segment (nor one spelled `%2e`, which some
/// tools decode), no control character.
pub fn check_prefix(prefix: &str) -> Result<(), NameError> {
    let refuse = |what| NameError::Prefix {
        prefix: prefix.to_owned(),
        what,
    };
    if prefix.chars().any(char::is_control) {
        return Err(refuse("control character"));
    }
    let trimmed = prefix.strip_suffix('/').unwrap_or(prefix);
    if trimmed.is_empty() {
        return Ok(());
    }
    for segment in trimmed.split('/') {
        let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
        let what = match decoded.as_str() {
            "" => "empty segment",
            "." => ". segment",
            ".." => ".. segment",
            _ => continue,
        };
        return Err(refuse(what));
    }
    Ok(())
}

/// The run folder's name: the UTC start second and 8 random hex digits, e.g.
/// `20261128T153000Z-3f9a1c2b`, so that two runs of the same case and host in the same second
/// never share a folder (and so never a key).
pub fn run_folder(started: time::OffsetDateTime) -> String {
    format!("{}-{}", folder_timestamp(started), run_id())
}

/// 32 random bits in hex. If the system's random source fails, the process id and the clock's
/// nanoseconds stand in: a collision then also needs the same second, case and host.
fn run_id() -> String {
    let mut bytes = [0u8; 4];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        let nanos = time::OffsetDateTime::now_utc().nanosecond();
        bytes = (nanos ^ std::process::id().rotate_left(16)).to_be_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The compact UTC timestamp used in evidence paths, e.g. `20261128T153000Z`.
pub fn folder_timestamp(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn case_ids_outside_the_safe_set_are_refused_not_rewritten() {
        for good in [
            "IR-42",
            "IR-20261202060000-i-0abc-x3",
            "a",
            "case_1.2",
            &"x".repeat(128),
        ] {
            assert_eq!(check_case_id(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "../../x",
            "a/b",
            "-x",
            ".hidden",
            "IR 42",
            "IR\n42",
            "caso-é",
            "x\0",
            &"x".repeat(129),
        ] {
            let err = check_case_id(bad).unwrap_err().to_string();
            assert!(
                err.contains("A-Z a-z 0-9") && err.contains("never rewritten"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn prefixes_with_traversal_or_empty_segments_are_refused() {
        for good in ["", "/", "evidence", "evidence/", "a/b/c", "a.b/c..d"] {
            assert_eq!(check_prefix(good), Ok(()), "{good}");
        }
        for (bad, what) in [
            ("../../x", ".. segment"),
            ("a/../b", ".. segment"),
            ("a//b", "empty segment"),
            ("/a", "empty segment"),
            ("a/./b", ". segment"),
            ("a//", "empty segment"),
            ("a/%2E%2e/b", ".. segment"),
            ("a\nb", "control character"),
            ("a\u{7f}", "control character"),
        ] {
            assert!(
                matches!(check_prefix(bad), Err(NameError::Prefix { what: w, .. }) if w == what),
                "{bad}"
            );
        }
    }

    #[test]
    fn run_folders_are_unique_within_a_second() {
        let t = time::macros::datetime!(2026-11-28 15:30:00 UTC);
        let a = run_folder(t);
        let b = run_folder(t);
        assert!(a.starts_with("20261128T153000Z-") && a.len() == 25, "{a}");
        assert_ne!(a, b);
    }

    proptest! {
        /// Whatever is accepted is one plain path segment: no separator, no traversal, no
        /// character a shell or URL would change.
        #[test]
        fn accepted_case_ids_are_plain_segments(case in ".{0,140}") {
            if check_case_id(&case).is_ok() {
                prop_assert!(!case.contains('/') && case != "." && case != "..");
                prop_assert!(case.bytes().all(|b| b.is_ascii_graphic()));
            }
        }

        #[test]
        fn accepted_prefixes_have_no_traversal(prefix in "[a./]{0,12}") {
            if check_prefix(&prefix).is_ok() {
                let t = prefix.trim_end_matches('/');
                prop_assert!(t.is_empty() || t.split('/').all(|s| !s.is_empty() && s != "." && s != ".."));
            }
        }
    }
}
