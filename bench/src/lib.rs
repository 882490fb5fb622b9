//! `strake bench`: a load generator for any etcd v3 endpoint (strake or etcd) and a
//! side-by-side comparison of strake with real etcd.
//!
//! It is a pure client: it speaks the etcd v3 gRPC API only and never links the
//! store, so its numbers mean the same against both servers.
//!
//! * [`workload`]: the operations of each workload.
//! * [`runner`]: clients, rate limit, histograms, progress.
//! * [`report`]: summaries as tables and JSON.
//! * [`client`]: connection pools.
//! * [`compare`]: starting strake and etcd side by side and comparing them
//!   (throughput, latency, memory, and CPU per operation from [`proc_cpu`]).
//! * [`dataset`]: a large dataset loaded, read and compacted under stall probes.
//! * [`cli`]: the command line.

pub mod cli;
pub mod client;
pub mod compare;
pub mod dataset;
pub mod plot;
pub mod proc_cpu;
pub mod report;
pub mod runner;
pub mod unary;
pub mod workload;
