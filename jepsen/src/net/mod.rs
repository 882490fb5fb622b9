//! Network fault injection that needs no root: a TCP proxy per peer link.

pub mod proxy;
