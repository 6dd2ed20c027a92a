//! Reads the AWS CLI's `s3api list-objects-v2` and `list-multipart-uploads` answers strictly.
//!
//! The "nothing left behind" checks rest on these lists being empty, so only the CLI's
//! documented ways of saying "none" count as empty: no output at all (some CLI versions print
//! nothing for an empty `--output json` listing), `{}`, or an object without the list's key.
//! Anything else that is not a well-formed list is an error, never an empty list.

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// The keys in a `list-objects-v2 --output json` answer.
pub fn object_keys(stdout: &[u8]) -> Result<Vec<String>> {
    listed(stdout, "Contents", "Key")
}

/// The upload ids in a `list-multipart-uploads --output json` answer.
pub fn upload_ids(stdout: &[u8]) -> Result<Vec<String>> {
    listed(stdout, "Uploads", "UploadId")
}

/// The (key, upload id) of every upload in a `list-multipart-uploads --output json` answer.
pub fn uploads(stdout: &[u8]) -> Result<Vec<(String, String)>> {
    let keys = listed(stdout, "Uploads", "Key")?;
    let ids = listed(stdout, "Uploads", "UploadId")?;
    Ok(keys.into_iter().zip(ids).collect())
}

/// The string `field` of every entry of the array `list` in a CLI JSON answer.
fn listed(stdout: &[u8], list: &str, field: &str) -> Result<Vec<String>> {
    let text = std::str::from_utf8(stdout).context("the AWS CLI's answer is not UTF-8")?;
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let answer: Value = serde_json::from_str(text)
        .with_context(|| format!("the AWS CLI's answer is not JSON: {text}"))?;
    let Some(object) = answer.as_object() else {
        bail!("the AWS CLI's answer is not a JSON object: {text}");
    };
    let Some(entries) = object.get(list) else {
        return Ok(Vec::new());
    };
    let Some(entries) = entries.as_array() else {
        bail!("{list} is not a list in the AWS CLI's answer: {text}");
    };
    entries
        .iter()
        .map(|entry| {
            entry
                .get(field)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .with_context(|| format!("an entry of {list} has no {field}: {entry}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_output_means_no_uploads() {
        assert!(upload_ids(b"").unwrap().is_empty());
        assert!(upload_ids(b"\n").unwrap().is_empty());
    }

    #[test]
    fn an_answer_without_the_list_means_none() {
        assert!(upload_ids(b"{}").unwrap().is_empty());
        assert!(
            upload_ids(br#"{"Bucket": "b", "RequestCharged": null}"#)
                .unwrap()
                .is_empty()
        );
        assert!(object_keys(br#"{"Prefix": "x/"}"#).unwrap().is_empty());
    }

    #[test]
    fn one_open_upload_is_listed() {
        let answer = br#"{"Bucket": "b", "Uploads": [
            {"UploadId": "2~abc", "Key": "e2e/disk.raw.zst", "Initiated": "2026-11-29T18:00:00Z"}
        ]}"#;
        assert_eq!(upload_ids(answer).unwrap(), ["2~abc"]);
        assert_eq!(
            uploads(answer).unwrap(),
            [("e2e/disk.raw.zst".to_owned(), "2~abc".to_owned())]
        );
    }

    #[test]
    fn objects_are_listed_by_key() {
        let answer = br#"{"Contents": [{"Key": "a", "Size": 1}, {"Key": "b/c", "Size": 2}]}"#;
        assert_eq!(object_keys(answer).unwrap(), ["a", "b/c"]);
    }

    #[test]
    fn unreadable_answers_are_errors() {
        for garbage in [
            &b"garbage"[..],
            b"<Error><Code>InternalError</Code></Error>",
            b"{\"Uploads\": [",
            b"[]",
            b"null",
            br#"{"Uploads": null}"#,
            br#"{"Uploads": {"UploadId": "x"}}"#,
            br#"{"Uploads": [{"Key": "no id"}]}"#,
            b"\xff\xfe",
        ] {
            assert!(
                upload_ids(garbage).is_err(),
                "{:?} was read as a list",
                String::from_utf8_lossy(garbage)
            );
        }
        assert!(object_keys(br#"{"Contents": [{"Size": 1}]}"#).is_err());
        assert!(uploads(br#"{"Uploads": [{"UploadId": "no key"}]}"#).is_err());
    }
}
