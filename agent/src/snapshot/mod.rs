//! EBS snapshots as disk evidence, read through the EBS direct APIs: no volume, no helper
//! instance, nothing on the suspect.
//!
//! - [`clients`]: EC2 and EBS clients in the snapshot's account (optionally through an assumed
//!   role, so an encrypted snapshot is read with that account's KMS grant) and errors that name
//!   the permission to grant;
//! - [`describe`]: `DescribeSnapshots`, and waiting for a `pending` snapshot;
//! - [`blocks`]: `ListSnapshotBlocks` page by page (never the whole map in memory) and
//!   `ListChangedBlocks` against a baseline, both checked as untrusted input;
//! - [`reader`]: `GetSnapshotBlock` with bounded concurrency and rate, each block's SHA-256
//!   checked against `x-amz-Checksum`, delivered in order to the pipeline as a whole-volume
//!   stream in which unlisted blocks are zeros.

pub mod blocks;
pub mod clients;
pub mod describe;
pub mod reader;

use std::time::Duration;

/// The EBS direct APIs' block size on AWS (512 KiB).
pub const AWS_BLOCK_SIZE: u32 = 512 * 1024;

/// `GetSnapshotBlock` requests per second the service allows per snapshot.
pub const MAX_BLOCK_RATE: u32 = 1000;

/// How a snapshot is read.
#[derive(Debug, Clone)]
pub struct ReadSettings {
    /// Concurrent `GetSnapshotBlock` requests (each holds one block in memory).
    pub concurrency: u32,
    /// `GetSnapshotBlock` requests per second, at most [`MAX_BLOCK_RATE`].
    pub max_rate: u32,
    /// How long to wait for a `pending` snapshot to complete.
    pub wait_timeout: Duration,
}

/// Why a snapshot cannot be read. Every message names the snapshot and what to do.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// AWS refused or failed a call; the message says which call and what to grant or check.
    #[error("{0}")]
    Api(String),
    /// The snapshot does not exist where it was looked for.
    #[error(
        "snapshot {id} was not found in {region}: check the id and --snapshot-region, and that the credentials (or --role-arn) are in the account that owns it"
    )]
    NotFound {
        /// Snapshot id.
        id: String,
        /// Region searched.
        region: String,
    },
    /// The snapshot did not complete in time.
    #[error(
        "snapshot {id} is still {state} ({progress}) after {waited_s} s: the EBS direct APIs read only completed snapshots; run again later or raise --wait-timeout"
    )]
    NotCompleted {
        /// Snapshot id.
        id: String,
        /// Its last state.
        state: String,
        /// Its last progress.
        progress: String,
        /// Seconds waited.
        waited_s: u64,
    },
    /// The snapshot failed (state `error`) or is otherwise unusable.
    #[error("snapshot {id} cannot be read: {why}")]
    Unusable {
        /// Snapshot id.
        id: String,
        /// Why.
        why: String,
    },
    /// The service sent something no correct response holds.
    #[error(
        "snapshot {id}: the EBS direct API sent an invalid response: {why}; nothing was stored as evidence"
    )]
    BadResponse {
        /// Snapshot id.
        id: String,
        /// What was wrong.
        why: String,
    },
    /// A block's bytes did not match the SHA-256 the service sent, on every attempt.
    #[error(
        "snapshot {id} block {index} (bytes {offset}..{end}): SHA-256 {got} does not match the x-amz-Checksum {want} on all {attempts} reads; the image was not stored"
    )]
    Checksum {
        /// Snapshot id.
        id: String,
        /// Block index.
        index: u64,
        /// Byte offset of the block in the volume.
        offset: u64,
        /// End of the block.
        end: u64,
        /// What the data hashed to (base64).
        got: String,
        /// What the service said (base64).
        want: String,
        /// Reads tried.
        attempts: u32,
    },
}
