//! strake-jepsen: a Jepsen-style harness for any etcd v3 cluster.
//!
//! It is a pure client: cluster control starts and signals server processes, faults are
//! injected from outside (signals, a TCP proxy on peer links), and everything else
//! speaks the etcd v3 API. It never links the store.
//!
//! * [`cluster`]: cluster control (start, stop, kill, pause, wipe) for strake or etcd.
//! * [`net`]: fault-injecting peer-link proxy.

pub mod cluster;
pub mod net;
