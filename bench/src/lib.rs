//! Switchyard load generator: open-loop SIP UAC and MGCP call agent (lands with the bench issue).
