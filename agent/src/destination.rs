//! `--to`: where an evidence set goes, and how its objects are named.
//!
//! Evidence lands under `<prefix>/<case>/<instance-id or hostname>/<UTC timestamp>-<run id>/`,
//! one image and one manifest per source, so two acquisitions never collide (even in the same
//! second) and a listing reads like a case file. Writes to S3 are conditional as well
//! (`If-None-Match: *`): an existing object is never replaced.

use std::path::PathBuf;
use std::str::FromStr;

use aws_sdk_s3::Client;
use tokio::runtime::Handle;

use crate::sink::local::{FileSink, write_atomic};
use crate::sink::s3::{S3Sink, S3Target, put_small};
use crate::sink::stdout::StdoutSink;
use crate::sink::{ImageSink, SinkError, StoredObject};

/// A parsed `--to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestSpec {
    /// `s3://bucket/prefix/`.
    S3 {
        /// Bucket name.
        bucket: String,
        /// Key prefix without leading or trailing slashes (may be empty).
        prefix: String,
    },
    /// A local directory.
    Dir(PathBuf),
    /// `-`: the image on stdout.
    Stdout,
}

/// A `--to` that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DestError {
    /// Syntax problem.
    #[error(
        "--to {given:?}: {problem}; use s3://BUCKET/PREFIX/, a local directory, or - for stdout"
    )]
    Invalid {
        /// What was given.
        given: String,
        /// What is wrong.
        problem: String,
    },
}

impl FromStr for DestSpec {
    type Err = DestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |problem: &str| DestError::Invalid {
            given: s.to_owned(),
            problem: problem.to_owned(),
        };
        if s == "-" {
            return Ok(Self::Stdout);
        }
        if s.is_empty() {
            return Err(invalid("empty destination"));
        }
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(invalid("missing bucket name"));
            }
            let valid = bucket.len() >= 3
                && bucket.len() <= 63
                && bucket
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
                && !bucket.starts_with(['-', '.'])
                && !bucket.ends_with(['-', '.']);
            if !valid {
                return Err(invalid(
                    "not a valid S3 bucket name (3-63 lowercase letters, digits, '-' or '.')",
                ));
            }
            crate::naming::check_prefix(prefix).map_err(|e| invalid(&e.to_string()))?;
            return Ok(Self::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.trim_matches('/').to_owned(),
            });
        }
        if let Some((scheme, _)) = s.split_once("://") {
            return Err(invalid(&format!("unsupported scheme {scheme}://")));
        }
        let path = PathBuf::from(s);
        if path.exists() && !path.is_dir() {
            return Err(invalid("exists and is not a directory"));
        }
        Ok(Self::Dir(path))
    }
}

/// Upload settings shared by every object of a set.
#[derive(Debug, Clone)]
pub struct UploadSettings {
    /// Parts in flight.
    pub concurrency: usize,
    /// SSE-KMS key id.
    pub sse_kms_key_id: Option<String>,
    /// How long to retry AbortMultipartUpload.
    pub abort_deadline: std::time::Duration,
}

/// What an S3 part size is chosen from. Only S3 has parts: other destinations ignore it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartSizing {
    /// Raw bytes of the source, when known.
    pub size_hint: Option<u64>,
    /// Uncompressed bytes per zstd frame.
    pub frame_size: u64,
    /// `--part-size` (None: automatic).
    pub requested: Option<u64>,
}

/// One evidence set: a destination plus the folder all its objects share.
#[derive(Debug, Clone)]
pub struct EvidenceSet {
    spec: DestSpec,
    s3: Option<(Client, Handle)>,
    settings: UploadSettings,
    /// `<prefix>/<case>/<host>/<timestamp>` (a key prefix or a directory).
    pub folder: String,
}

impl EvidenceSet {
    /// Lays out a new set in a run folder of its own. `s3` must be given for an S3 destination.
    /// A case id outside [`crate::naming::CASE_ID_RULE`] is refused.
    pub fn new(
        spec: DestSpec,
        s3: Option<(Client, Handle)>,
        settings: UploadSettings,
        case: &str,
        host: &str,
        started: time::OffsetDateTime,
    ) -> Result<Self, crate::naming::NameError> {
        crate::naming::check_case_id(case)?;
        let leaf = format!(
            "{}/{}/{}",
            case,
            crate::host::sanitize(host),
            crate::naming::run_folder(started)
        );
        let folder = match &spec {
            DestSpec::S3 { prefix, .. } if !prefix.is_empty() => format!("{prefix}/{leaf}"),
            DestSpec::Dir(dir) => dir.join(&leaf).display().to_string(),
            _ => leaf,
        };
        Ok(Self {
            spec,
            s3,
            settings,
            folder,
        })
    }

    /// The parsed destination.
    pub fn spec(&self) -> &DestSpec {
        &self.spec
    }

    fn s3(&self) -> Result<(&Client, &Handle, &str), SinkError> {
        match (&self.spec, &self.s3) {
            (DestSpec::S3 { bucket, .. }, Some((c, h))) => Ok((c, h, bucket.as_str())),
            _ => Err(SinkError::S3(
                "internal: S3 destination without a client".into(),
            )),
        }
    }

    /// Opens the sink for image `name` (e.g. `nvme1n1.raw.zst`). For S3 this chooses the part
    /// size first, refusing one that cannot work (S3's limits are no concern of the others).
    pub fn open_image(
        &self,
        name: &str,
        sizing: &PartSizing,
    ) -> Result<Box<dyn ImageSink>, SinkError> {
        match &self.spec {
            DestSpec::Stdout => Ok(Box::new(StdoutSink::default())),
            DestSpec::Dir(_) => Ok(Box::new(FileSink::create(
                &PathBuf::from(&self.folder).join(name),
            )?)),
            DestSpec::S3 { .. } => {
                let part_size = crate::part_size::choose(
                    sizing.size_hint,
                    sizing.frame_size,
                    sizing.requested,
                )?;
                let (client, rt, bucket) = self.s3()?;
                let target = S3Target {
                    bucket: bucket.to_owned(),
                    key: format!("{}/{name}", self.folder),
                    part_size,
                    concurrency: self.settings.concurrency,
                    sse_kms_key_id: self.settings.sse_kms_key_id.clone(),
                    abort_deadline: self.settings.abort_deadline,
                };
                Ok(Box::new(S3Sink::create(
                    client.clone(),
                    rt.clone(),
                    target,
                )?))
            }
        }
    }

    /// For a local directory: removes the run folder if the run left nothing in it, and then its
    /// host and case folders if they are empty too, so a failed run leaves no empty
    /// `<case>/<host>/<run>/` behind. The destination directory itself is never removed.
    pub fn remove_empty_folders(&self) {
        let DestSpec::Dir(root) = &self.spec else {
            return;
        };
        let mut dir = PathBuf::from(&self.folder);
        while dir != *root && dir.starts_with(root) {
            // remove_dir fails on a non-empty folder, which is what stops the walk.
            if std::fs::remove_dir(&dir).is_err() {
                return;
            }
            if !dir.pop() {
                return;
            }
        }
    }

    /// Stores a small file (manifest, artifact) of the set. Returns None for stdout, which has
    /// nowhere to put it.
    pub fn put_file(
        &self,
        name: &str,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> Result<Option<StoredObject>, SinkError> {
        match &self.spec {
            DestSpec::Stdout => Ok(None),
            DestSpec::Dir(_) => {
                let path = PathBuf::from(&self.folder).join(name);
                write_atomic(&path, &bytes)?;
                Ok(Some(StoredObject {
                    location: path.display().to_string(),
                    ..StoredObject::default()
                }))
            }
            DestSpec::S3 { .. } => {
                let (client, rt, bucket) = self.s3()?;
                let key = format!("{}/{name}", self.folder);
                put_small(
                    client,
                    rt,
                    bucket,
                    &key,
                    bytes,
                    content_type,
                    self.settings.sse_kms_key_id.as_deref(),
                )
                .map(Some)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::part_size::PartSizeError;

    #[test]
    fn parses_destinations() {
        assert_eq!("-".parse(), Ok(DestSpec::Stdout));
        assert_eq!(
            "s3://forensics-bucket/evidence/".parse(),
            Ok(DestSpec::S3 {
                bucket: "forensics-bucket".into(),
                prefix: "evidence".into()
            })
        );
        assert_eq!(
            "s3://forensics-bucket".parse(),
            Ok(DestSpec::S3 {
                bucket: "forensics-bucket".into(),
                prefix: String::new()
            })
        );
        assert_eq!(
            "/tmp/airf-evidence-x".parse(),
            Ok(DestSpec::Dir("/tmp/airf-evidence-x".into()))
        );
    }

    #[test]
    fn bad_destinations_name_the_problem() {
        for (bad, words) in [
            ("s3://", "missing bucket"),
            ("s3:///x", "missing bucket"),
            ("s3://Bad_Bucket/x", "not a valid S3 bucket"),
            ("s3://b-1/../../x", ".. segment"),
            ("s3://b-1/a//b", "empty segment"),
            ("http://x/y", "unsupported scheme"),
            ("/etc/hostname", "not a directory"),
            ("", "empty"),
        ] {
            let err = bad.parse::<DestSpec>().unwrap_err().to_string();
            assert!(
                err.contains(words) && err.contains("s3://BUCKET/PREFIX/"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn folder_layout() {
        let t = time::macros::datetime!(2026-11-28 15:30:00 UTC);
        let settings = UploadSettings {
            concurrency: 1,
            sse_kms_key_id: None,
            abort_deadline: std::time::Duration::ZERO,
        };
        let set = EvidenceSet::new(
            DestSpec::S3 {
                bucket: "b".into(),
                prefix: "p/q".into(),
            },
            None,
            settings,
            "IR-42",
            "i-0abc",
            t,
        )
        .unwrap();
        let (parent, run) = set.folder.rsplit_once('/').unwrap();
        assert_eq!(parent, "p/q/IR-42/i-0abc");
        assert!(run.starts_with("20261128T153000Z-"), "{run}");
    }

    #[test]
    fn a_case_id_outside_the_rule_is_refused() {
        let settings = UploadSettings {
            concurrency: 1,
            sse_kms_key_id: None,
            abort_deadline: std::time::Duration::ZERO,
        };
        let spec = DestSpec::Stdout;
        let t = time::OffsetDateTime::UNIX_EPOCH;
        assert!(EvidenceSet::new(spec, None, settings, "../../x", "h", t).is_err());
    }

    fn set_to(spec: DestSpec) -> EvidenceSet {
        let settings = UploadSettings {
            concurrency: 1,
            sse_kms_key_id: None,
            abort_deadline: std::time::Duration::ZERO,
        };
        EvidenceSet::new(
            spec,
            None,
            settings,
            "IR-1",
            "h",
            time::OffsetDateTime::UNIX_EPOCH,
        )
        .unwrap()
    }

    /// A part size S3 would refuse (below its 5 MiB minimum), for a source too large for one
    /// S3 object: no concern of a directory or of stdout.
    const NOT_FOR_S3: PartSizing = PartSizing {
        size_hint: Some(60 << 40),
        frame_size: 2 << 20,
        requested: Some(1 << 20),
    };

    #[test]
    fn a_failed_local_run_leaves_no_empty_folders() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("keep"), b"x").unwrap();
        let set = set_to(DestSpec::Dir(dir.path().to_owned()));
        let mut sink = set.open_image("sda.raw.zst", &NOT_FOR_S3).unwrap();
        sink.abort();
        set.remove_empty_folders();
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("keep")]);
    }

    #[test]
    fn a_local_run_that_stored_something_keeps_its_folder() {
        let dir = tempfile::tempdir().unwrap();
        let set = set_to(DestSpec::Dir(dir.path().to_owned()));
        set.put_file("sda.manifest.json", b"{}".to_vec(), "application/json")
            .unwrap();
        set.remove_empty_folders();
        assert!(
            PathBuf::from(&set.folder)
                .join("sda.manifest.json")
                .exists()
        );
    }

    #[test]
    fn local_and_stdout_destinations_ignore_s3_part_limits() {
        let dir = tempfile::tempdir().unwrap();
        let set = set_to(DestSpec::Dir(dir.path().to_owned()));
        let mut sink = set.open_image("sda.raw.zst", &NOT_FOR_S3).unwrap();
        sink.abort();
        let set = set_to(DestSpec::Stdout);
        assert!(set.open_image("sda.raw.zst", &NOT_FOR_S3).is_ok());
    }

    #[test]
    fn s3_refuses_part_sizes_outside_its_limits() {
        let set = set_to(DestSpec::S3 {
            bucket: "b".into(),
            prefix: String::new(),
        });
        let too_small = PartSizing {
            size_hint: Some(1 << 30),
            ..NOT_FOR_S3
        };
        let err = set.open_image("sda.raw.zst", &too_small).err().unwrap();
        assert!(
            matches!(err, SinkError::PartSize(PartSizeError::OutOfRange(p)) if p == 1 << 20),
            "{err}"
        );
        let automatic = PartSizing {
            requested: None,
            ..NOT_FOR_S3
        };
        let err = set.open_image("sda.raw.zst", &automatic).err().unwrap();
        assert!(
            matches!(err, SinkError::PartSize(PartSizeError::SourceTooLarge(_))),
            "{err}"
        );
    }
}
