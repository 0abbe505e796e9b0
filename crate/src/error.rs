//! The crate's one error type. Every fallible public function returns it, so
//! callers (the CLI, the wasm bindings) can turn it into a message a person
//! can act on.

/// What went wrong, in terms a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum HearthError {
    /// No WebGPU/Vulkan/Metal/DX12 adapter could be found.
    #[error("no GPU adapter available: {0}")]
    NoAdapter(String),
    /// The adapter refused to create a device (limits, features, lost driver).
    #[error("could not create a GPU device: {0}")]
    DeviceRequest(String),
    /// The GPU rejected a command (validation error, out of memory, device lost).
    #[error("GPU error: {0}")]
    Gpu(String),
    /// Reading a result back from the GPU failed.
    #[error("GPU read-back failed: {0}")]
    ReadBack(String),
    /// A caller passed arguments that cannot be valid.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

/// Shorthand used across the crate.
pub type Result<T> = std::result::Result<T, HearthError>;
