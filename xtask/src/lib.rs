//! Developer tooling shared by `cargo xtask` and the integration tests: toolchain setup and the
//! network-namespace testbed. No product logic lives here.
pub mod bench;
pub mod package;
pub mod run;
pub mod setup;
pub mod testbed;
