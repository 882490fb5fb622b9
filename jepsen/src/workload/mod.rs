//! Workloads: what each harness process does, and how the resulting history is
//! checked.
//!
//! * [`register`]: read / write / compare-and-set on many keys (linearizability per key).
//! * [`append`]: Elle list-append transactions (strict serializability).
//! * [`watch`]: watchers must see every revision once, in order, consistent with reads.

pub mod append;
pub mod register;
pub mod watch;

use serde::{Deserialize, Serialize};

/// The workloads the runner knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorkloadKind {
    /// Per-key register with CAS.
    Register,
    /// List-append transactions.
    Append,
    /// Watches against writes.
    Watch,
}
