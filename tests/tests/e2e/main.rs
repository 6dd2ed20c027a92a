//! Every end-to-end test of airf in one test binary.
//!
//! One binary instead of one per file: each links the AWS SDKs, and a dozen of them cost a
//! dozen slow links and gigabytes of disk in CI. Pick a suite with a name filter, e.g.
//! `cargo test -p airf-e2e --test e2e -- disk::`. The `*_vm` suites are `#[ignore]`d here and run
//! by `tests/vm/run-tests.sh`, which boots the VM they need.

mod cli_injection;
mod control_plane;
mod controller;
mod controller_faults;
mod controller_vm;
mod custody;
mod disk;
mod evidence_faults;
mod failures;
mod iam;
mod imds;
mod isolation;
mod memory_vm;
mod read_errors;
mod release;
mod snapshot;
mod ssm_documents;
mod tls;
mod triage;
mod triage_vm;
mod verify_custody;
mod workflow;
