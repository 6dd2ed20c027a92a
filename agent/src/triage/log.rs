//! What a triage run left out (over a budget) and could not read (with the errno), and the
//! clock it keeps to. Both lists are bounded: a host with a million unreadable files must not
//! make the manifest a million lines long.

use std::time::{Duration, Instant};

use airf_evidence::triage::{Skipped, Text, Unreadable};

/// Most entries kept in each list; the rest are counted in one last entry.
const MAX_ENTRIES: usize = 5_000;

/// The run's time budget.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    end: Instant,
    budget: Duration,
}

impl Deadline {
    pub fn new(budget: Duration) -> Self {
        Self {
            end: Instant::now() + budget,
            budget,
        }
    }

    pub fn expired(&self) -> bool {
        Instant::now() >= self.end
    }

    /// The reason recorded for what the budget left out.
    pub fn reason(&self) -> String {
        format!(
            "the time budget of {} s was spent (raise --time-budget)",
            self.budget.as_secs()
        )
    }
}

/// Skipped and unreadable items of one run.
#[derive(Debug, Default)]
pub struct Log {
    pub skipped: Vec<Skipped>,
    pub unreadable: Vec<Unreadable>,
    dropped_skipped: u64,
    dropped_unreadable: u64,
}

/// The errno's name (`EACCES`), when the error carries one.
pub fn errno_name(e: &std::io::Error) -> Option<String> {
    e.raw_os_error()
        .map(|code| format!("{:?}", nix::errno::Errno::from_raw(code)))
}

impl Log {
    pub fn skipped(&mut self, item: impl Into<Text>, reason: impl Into<String>) {
        if self.skipped.len() < MAX_ENTRIES {
            self.skipped.push(Skipped {
                item: item.into(),
                reason: reason.into(),
            });
        } else {
            self.dropped_skipped += 1;
        }
    }

    pub fn unreadable(&mut self, item: impl Into<Text>, e: &std::io::Error) {
        self.unreadable_with(item, errno_name(e), e.to_string());
    }

    pub fn unreadable_with(&mut self, item: impl Into<Text>, errno: Option<String>, error: String) {
        if self.unreadable.len() < MAX_ENTRIES {
            self.unreadable.push(Unreadable {
                item: item.into(),
                errno,
                error,
            });
        } else {
            self.dropped_unreadable += 1;
        }
    }

    /// Closes the lists, counting what did not fit.
    pub fn finish(mut self) -> (Vec<Skipped>, Vec<Unreadable>) {
        if self.dropped_skipped > 0 {
            self.skipped.push(Skipped {
                item: "(more)".into(),
                reason: format!("{} more skipped items not listed", self.dropped_skipped),
            });
        }
        if self.dropped_unreadable > 0 {
            self.unreadable.push(Unreadable {
                item: "(more)".into(),
                errno: None,
                error: format!(
                    "{} more unreadable items not listed",
                    self.dropped_unreadable
                ),
            });
        }
        (self.skipped, self.unreadable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_names_are_the_c_names() {
        let e = std::io::Error::from_raw_os_error(13);
        assert_eq!(errno_name(&e).as_deref(), Some("EACCES"));
        assert_eq!(errno_name(&std::io::Error::other("x")), None);
    }

    #[test]
    fn lists_are_bounded_and_count_the_rest() {
        let mut log = Log::default();
        for i in 0..MAX_ENTRIES + 7 {
            log.skipped(format!("{i}").as_str(), "x");
        }
        let (skipped, _) = log.finish();
        assert_eq!(skipped.len(), MAX_ENTRIES + 1);
        assert!(skipped[MAX_ENTRIES].reason.starts_with("7 more"));
    }
}
