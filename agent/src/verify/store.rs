//! Where `verify` reads from: S3 objects or local files, as blocking readers.
//!
//! A missing object is told apart from one that cannot be read, because an absent
//! countersignature is a finding ("unsigned") while an unreadable one means verify could not run.

use std::io::Read;
use std::path::{Path, PathBuf};

use aws_sdk_s3::Client;
use tokio::runtime::Handle;

use crate::s3_client::{describe, error_code};

/// Where a manifest (and its image) lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// In S3.
    S3 {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
    },
    /// A local file.
    File(PathBuf),
}

/// Why an object could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// It does not exist.
    #[error("{0} does not exist")]
    NotFound(String),
    /// Anything else (access, network, I/O), as a sentence naming the fix.
    #[error("{0}")]
    Failed(String),
}

impl Location {
    /// Parses `s3://bucket/key` or a path.
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, key) = rest
                .split_once('/')
                .filter(|(b, k)| !b.is_empty() && !k.is_empty())
                .ok_or_else(|| format!("{s:?} is not s3://BUCKET/KEY of a manifest"))?;
            // The folders of the key follow the same rule as the agent's --to prefixes: no
            // traversal, no empty segment (S3 would look up that literal key).
            let folder = key.rsplit_once('/').map_or("", |(dir, _)| dir);
            if key.starts_with('/') || !folder.is_empty() {
                crate::naming::check_prefix(if key.starts_with('/') { key } else { folder })
                    .map_err(|e| format!("{s:?}: {e}"))?;
            }
            return Ok(Self::S3 {
                bucket: bucket.into(),
                key: key.into(),
            });
        }
        Ok(Self::File(PathBuf::from(s)))
    }

    /// The object named `name` in the same folder.
    pub fn sibling(&self, name: &str) -> Self {
        match self {
            Self::S3 { bucket, key } => {
                let dir = key.rsplit_once('/').map_or("", |(d, _)| d);
                let key = if dir.is_empty() {
                    name.to_owned()
                } else {
                    format!("{dir}/{name}")
                };
                Self::S3 {
                    bucket: bucket.clone(),
                    key,
                }
            }
            Self::File(p) => Self::File(p.parent().unwrap_or(Path::new(".")).join(name)),
        }
    }

    /// The object's own name (last key or path segment).
    pub fn name(&self) -> String {
        match self {
            Self::S3 { key, .. } => key.rsplit('/').next().unwrap_or_default().to_owned(),
            Self::File(p) => p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        }
    }

    /// `s3://bucket/key` or the path.
    pub fn display(&self) -> String {
        match self {
            Self::S3 { bucket, key } => format!("s3://{bucket}/{key}"),
            Self::File(p) => p.display().to_string(),
        }
    }
}

/// Reads a whole small object (a manifest, a countersignature).
pub fn read_small(loc: &Location, s3: Option<(&Client, &Handle)>) -> Result<Vec<u8>, ReadError> {
    let mut r = open(loc, s3, None)?;
    let mut v = Vec::new();
    r.read_to_end(&mut v)
        .map_err(|e| ReadError::Failed(format!("reading {} failed: {e}", loc.display())))?;
    Ok(v)
}

/// Opens an object for reading, at `version` when given (S3 only).
pub fn open(
    loc: &Location,
    s3: Option<(&Client, &Handle)>,
    version: Option<&str>,
) -> Result<Box<dyn Read + Send>, ReadError> {
    match loc {
        Location::File(p) => match std::fs::File::open(p) {
            Ok(f) => Ok(Box::new(f)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(ReadError::NotFound(p.display().to_string()))
            }
            Err(e) => Err(ReadError::Failed(format!(
                "cannot open {}: {e}",
                p.display()
            ))),
        },
        Location::S3 { bucket, key } => {
            let (client, rt) =
                s3.ok_or_else(|| ReadError::Failed("internal: no S3 client".into()))?;
            let out = rt
                .block_on(
                    client
                        .get_object()
                        .bucket(bucket)
                        .key(key)
                        .set_version_id(version.map(str::to_owned))
                        .send(),
                )
                .map_err(|e| match error_code(&e).as_deref() {
                    Some("NoSuchKey" | "NotFound") => ReadError::NotFound(loc.display()),
                    _ => ReadError::Failed(describe("GetObject", &loc.display(), &e)),
                })?;
            Ok(Box::new(S3Body {
                rt: rt.clone(),
                body: out.body,
                cur: bytes::Bytes::new(),
            }))
        }
    }
}

/// A blocking reader over an S3 response body.
struct S3Body {
    rt: Handle,
    body: aws_sdk_s3::primitives::ByteStream,
    cur: bytes::Bytes,
}

impl Read for S3Body {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rt.block_on(self.body.try_next()) {
                Ok(Some(b)) => self.cur = b,
                Ok(None) => return Ok(0),
                Err(e) => return Err(std::io::Error::other(e)),
            }
        }
        let n = buf.len().min(self.cur.len());
        let head = self.cur.split_to(n);
        buf.get_mut(..n).unwrap_or_default().copy_from_slice(&head);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_is_found_beside_the_manifest() {
        let m = Location::parse("s3://b/case/host/ts/sda.manifest.json");
        assert_eq!(
            m.map(|m| m.sibling("sda.raw.zst")),
            Ok(Location::S3 {
                bucket: "b".into(),
                key: "case/host/ts/sda.raw.zst".into()
            })
        );
        assert_eq!(
            Location::File("/x/y.json".into()).sibling("a"),
            Location::File("/x/a".into())
        );
        assert!(Location::parse("s3://bucket-only").is_err());
    }

    #[test]
    fn a_missing_file_is_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let missing = Location::File(dir.path().join("nothing.sig.json"));
        assert!(matches!(
            read_small(&missing, None),
            Err(ReadError::NotFound(_))
        ));
        // A directory exists but cannot be read as a file.
        assert!(matches!(
            read_small(&Location::File(dir.path().into()), None),
            Err(ReadError::Failed(_))
        ));
    }
}
