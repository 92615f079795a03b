//! Switchyard processors: the SIP UAS and MGCP gateway that conduct dialogs the dispatcher hands them.
//!
//! The state machines land with the dispatch issue; this crate exists so the workspace layout is
//! the one in DESIGN.md from the start.
