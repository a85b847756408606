//! Readers of SBOMs and lock files (CycloneDX, SPDX, Cargo.lock, agent JSON) into inventory apps.
