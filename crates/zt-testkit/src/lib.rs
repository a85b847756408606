//! Test support: shared data paths, throwaway PostgreSQL, running the real binaries.
