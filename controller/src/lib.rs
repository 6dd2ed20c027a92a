//! airf controller: the Lambda that turns an incident trigger (a `SecurityIncidentStatus` tag or
//! a Security Hub custom action) into a Step Functions investigation, and runs its steps:
//! claim, prepare, acquire (through the SSM documents), verify (and countersign, [`custody`]),
//! contain, or fail.
//!
//! Decisions are pure functions in [`actions`]; AWS calls go through the [`cloud::Cloud`] trait,
//! implemented for the real SDK in [`aws`].

pub mod actions;
pub mod aws;
pub mod cloud;
pub mod config;
pub mod custody;
pub mod error;
pub mod event;
#[cfg(test)]
pub mod fake;
pub mod handler;
pub mod model;
pub mod notify;

pub use config::Config;
pub use error::{Error, Result};
pub use handler::handle;
