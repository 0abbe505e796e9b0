//! File formats read by the engine, as parsers over bytes (no I/O).

pub mod gguf;
pub mod manifest;
pub mod shard;
