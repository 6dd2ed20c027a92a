//! A local directory, for labs and analysts. The image is written as `<name>.partial` and renamed
//! only when whole, so a directory listing never shows a partial image under its final name.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::{AbortReport, ImageSink, SinkError, StoredObject};

/// Writes one image file.
#[derive(Debug)]
pub struct FileSink {
    partial: PathBuf,
    target: PathBuf,
    out: Option<BufWriter<File>>,
}

impl FileSink {
    /// Creates `<target>.partial`, refusing to overwrite anything.
    pub fn create(target: &Path) -> Result<Self, SinkError> {
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|error| SinkError::Io {
                path: parent.display().to_string(),
                error,
            })?;
        }
        if target.exists() {
            return Err(SinkError::Io {
                path: target.display().to_string(),
                error: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "already exists; evidence is never overwritten",
                ),
            });
        }
        let mut partial = target.as_os_str().to_owned();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&partial)
            .map_err(|error| SinkError::Io {
                path: partial.display().to_string(),
                error,
            })?;
        Ok(Self {
            partial,
            target: target.to_owned(),
            out: Some(BufWriter::with_capacity(1 << 20, file)),
        })
    }

    fn io_err(&self, error: std::io::Error) -> SinkError {
        SinkError::Io {
            path: self.partial.display().to_string(),
            error,
        }
    }
}

impl ImageSink for FileSink {
    fn write(&mut self, data: &[u8]) -> Result<(), SinkError> {
        let Some(out) = self.out.as_mut() else {
            return Err(self.io_err(std::io::Error::other("image already closed")));
        };
        out.write_all(data).map_err(|error| SinkError::Io {
            path: self.partial.display().to_string(),
            error,
        })
    }

    fn finish(&mut self) -> Result<StoredObject, SinkError> {
        let Some(out) = self.out.take() else {
            return Err(self.io_err(std::io::Error::other("image already closed")));
        };
        let file = out.into_inner().map_err(|e| self.io_err(e.into_error()))?;
        file.sync_all().map_err(|e| self.io_err(e))?;
        std::fs::rename(&self.partial, &self.target).map_err(|e| self.io_err(e))?;
        Ok(StoredObject {
            location: self.target.display().to_string(),
            ..StoredObject::default()
        })
    }

    fn abort(&mut self) -> AbortReport {
        self.out = None;
        match std::fs::remove_file(&self.partial) {
            Ok(()) => AbortReport {
                clean: true,
                detail: format!("removed partial file {}", self.partial.display()),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => AbortReport {
                clean: true,
                detail: "no partial file".into(),
            },
            Err(e) => AbortReport {
                clean: false,
                detail: format!(
                    "could not remove partial file {} ({e}); delete it by hand",
                    self.partial.display()
                ),
            },
        }
    }
}

/// Writes a small file (a manifest or artifact) atomically: temp file, fsync, rename.
pub fn write_atomic(target: &Path, bytes: &[u8]) -> Result<(), SinkError> {
    let mut sink = FileSink::create(target)?;
    sink.write(bytes)?;
    sink.finish().map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_is_invisible_until_finish() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let target = dir.path().join("a/img.zst");
        let mut sink = FileSink::create(&target)?;
        sink.write(b"abc")?;
        assert!(!target.exists());
        sink.finish()?;
        assert_eq!(std::fs::read(&target)?, b"abc");
        assert!(
            FileSink::create(&target).is_err(),
            "never overwrite evidence"
        );
        Ok(())
    }

    #[test]
    fn abort_leaves_nothing() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let target = dir.path().join("img.zst");
        let mut sink = FileSink::create(&target)?;
        sink.write(b"abc")?;
        assert!(sink.abort().clean);
        assert_eq!(std::fs::read_dir(dir.path())?.count(), 0);
        Ok(())
    }
}
