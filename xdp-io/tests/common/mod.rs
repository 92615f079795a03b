//! Shared by xdp-io's integration tests: the scapy-made frame fixtures and the root guard.
#![allow(dead_code)]

pub mod fixtures;

/// Fails the test loudly unless running as root.
pub fn require_root() {
    xtask::testbed::require_root()
}

/// A testbed name unique to this test process and `tag`.
pub fn tb_name(tag: &str) -> String {
    xtask::testbed::unique_name(tag)
}

/// The repository's `testdata/`, seen from this crate.
pub const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata");
