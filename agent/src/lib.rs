//! airf-agent: forensic acquisition of block devices (and memory) on a suspect Linux host.
//!
//! Evidence streams from the source through SHA-256, parallel zstd (seekable format) and a
//! second SHA-256 straight into S3 multipart upload, a local directory or stdout; nothing is
//! written to the suspect's disks. A manifest stored last proves the image whole, and
//! [`verify`] checks stored evidence against it.
//!
//! ```no_run
//! use airf_agent::pipeline::{run, Control, PipelineConfig};
//! use airf_agent::sink::{ImageSink, local::FileSink};
//! # fn demo(producer: &mut dyn airf_agent::pipeline::Producer) -> Result<(), Box<dyn std::error::Error>> {
//! let mut sink = FileSink::create(std::path::Path::new("/tmp/evidence/sda.raw.zst"))?;
//! let cfg = PipelineConfig { frame_size: 4 << 20, level: 1, threads: 2 };
//! let out = run(producer, &mut sink, &cfg, &Control::default())?;
//! sink.finish()?;
//! println!("raw sha256 {}", out.raw_sha256);
//! # Ok(()) }
//! ```

pub mod acquire;
pub mod destination;
pub mod fetch;
pub mod hash;
pub mod host;
pub mod manifest;
pub mod memory;
pub mod naming;
pub mod part_size;
pub mod pipeline;
pub mod progress;
pub mod report;
pub mod s3_client;
pub mod seekable;
pub mod sink;
pub mod snapshot;
pub mod source;
pub mod symbols;
pub mod tls;
pub mod triage;
pub mod verify;
