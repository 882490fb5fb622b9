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
//! * [`net`]: fault-injecting peer-link proxy; [`nemesis`]: faults and heals.
//! * [`client`], [`workload`]: what processes do; [`runner`]: a whole test run.
//! * [`report`]: HTML timelines; [`cli`]: `strake jepsen`.

pub mod check;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod edn;
pub mod elle;
pub mod formats;
pub mod history;
pub mod model;
pub mod nemesis;
pub mod net;
pub mod report;
pub mod runner;
pub mod wgl;
pub mod workload;

/// The end of the key range of all keys with `prefix`.
pub fn workload_prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}
