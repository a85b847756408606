//! Simulated agents that load-test a ZeroTrace server.
