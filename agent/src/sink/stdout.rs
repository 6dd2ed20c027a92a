//! Streaming the image to standard output, for piping into another tool.

use std::io::{BufWriter, Stdout, Write};

use super::{AbortReport, ImageSink, SinkError, StoredObject};

/// Writes the compressed image to stdout.
#[derive(Debug)]
pub struct StdoutSink {
    out: BufWriter<Stdout>,
}

impl Default for StdoutSink {
    fn default() -> Self {
        Self {
            out: BufWriter::with_capacity(1 << 20, std::io::stdout()),
        }
    }
}

fn io_err(error: std::io::Error) -> SinkError {
    SinkError::Io {
        path: "standard output".into(),
        error,
    }
}

impl ImageSink for StdoutSink {
    fn write(&mut self, data: &[u8]) -> Result<(), SinkError> {
        self.out.write_all(data).map_err(io_err)
    }

    fn finish(&mut self) -> Result<StoredObject, SinkError> {
        self.out.flush().map_err(io_err)?;
        Ok(StoredObject {
            location: "-".into(),
            ..StoredObject::default()
        })
    }

    fn abort(&mut self) -> AbortReport {
        let _ = self.out.flush();
        AbortReport {
            clean: false,
            detail: "the reader of standard output received a partial stream (it has no seek table and fails `zstd -t`)".into(),
        }
    }
}
