//! strake-jepsen: a Jepsen-style harness for any etcd v3 cluster.
//!
//! It is a pure client: cluster control starts and signals server processes, faults are
//! injected from outside (signals, a TCP proxy on peer links), and everything else
//! speaks the etcd v3 API. It never links the store.
//!
//! * [`history`]: events, operations, the JSON-lines format.
//! * [`edn`], [`formats`]: reading Jepsen/Knossos/Elle/Porcupine histories.
//! * [`model`]: sequential specifications.
//! * [`wgl`]: the linearizability search; [`check`]: partitions, failure analysis.
//! * [`elle`]: the list-append transactional checker.
//! * [`cluster`]: cluster control (start, stop, kill, pause, wipe) for strake or etcd.
//! * [`net`]: fault-injecting peer-link proxy.

pub mod check;
pub mod cluster;
pub mod edn;
pub mod elle;
pub mod formats;
pub mod history;
pub mod model;
pub mod net;
pub mod wgl;
