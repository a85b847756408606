//! The HTTP API, workers, rate limits, metrics and dashboard of the ZeroTrace server.
