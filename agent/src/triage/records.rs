//! One category's records as JSON lines (`triage.<category>.jsonl`), hashed and stored whole.

use airf_evidence::triage::{TriageObject, names};
use serde::Serialize;

use crate::destination::EvidenceSet;
use crate::hash::Sha256;
use crate::sink::SinkError;

/// The lines of one category, kept in memory until stored (a few MB on a busy host).
#[derive(Debug)]
pub struct Records {
    category: &'static str,
    buf: Vec<u8>,
    count: u64,
}

impl Records {
    pub fn new(category: &'static str) -> Self {
        Self {
            category,
            buf: Vec::new(),
            count: 0,
        }
    }

    /// Appends one record as one line.
    pub fn push<T: Serialize>(&mut self, record: &T) {
        // Records are plain structs with string keys: serializing them cannot fail, but a
        // failure must not take the other lines with it.
        let start = self.buf.len();
        if serde_json::to_writer(&mut self.buf, record).is_ok() {
            self.buf.push(b'\n');
            self.count += 1;
        } else {
            self.buf.truncate(start);
        }
    }

    pub fn category(&self) -> &'static str {
        self.category
    }

    pub fn len(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The bytes as they are stored (tests).
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Stores the lines and describes the stored object.
    pub fn store(self, set: &EvidenceSet) -> Result<TriageObject, SinkError> {
        let name = names::records(self.category);
        let object = TriageObject {
            name: name.clone(),
            category: self.category.to_owned(),
            records: Some(self.count),
            size: self.buf.len() as u64,
            sha256: hex::encode(Sha256::digest(&self.buf)),
        };
        set.put_file(&name, self.buf, "application/x-ndjson")?;
        Ok(object)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_record_and_newlines_escaped() {
        let mut r = Records::new("x");
        r.push(&serde_json::json!({"name": "a\nb"}));
        r.push(&serde_json::json!({"name": "c"}));
        assert_eq!(r.len(), 2);
        assert_eq!(r.bytes().iter().filter(|&&b| b == b'\n').count(), 2);
    }
}
