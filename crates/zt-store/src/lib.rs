//! The storage interface and its SQLite and PostgreSQL implementations, including the durable queue.
