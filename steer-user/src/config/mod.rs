//! Configuration: TOML parsing and complete validation (owned by the config work in progress).
