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
    /// The model file could not be parsed.
    #[error(transparent)]
    Gguf(#[from] crate::formats::gguf::GgufError),
    /// The model file parsed but does not describe a model this engine runs
    /// (a missing metadata key, an unsupported architecture or tensor type).
    #[error("model: {0}")]
    Model(String),
    /// The input does not fit in the context the model was loaded with.
    #[error("{needed} positions do not fit in the context of {context}")]
    ContextFull { needed: usize, context: usize },
    /// A file could not be read.
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    /// A caller passed arguments that cannot be valid.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The model's tokenizer is malformed (missing or inconsistent metadata)
    /// or a tokenizer operation failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The model asks for a tokenizer type or pre-tokenizer this engine does
    /// not implement; guessing another would give wrong token ids.
    #[error("unsupported tokenizer: {0}")]
    UnsupportedTokenizer(String),
    /// The model has no chat template (`tokenizer.chat_template`).
    #[error("the model has no chat template (tokenizer.chat_template)")]
    NoChatTemplate,
    /// The chat template failed to compile or to render.
    #[error("chat template: {0}")]
    ChatTemplate(String),
    /// A web model package (manifest, shard) is malformed or inconsistent.
    #[error("model package: {0}")]
    Package(String),
    /// A file's bytes do not match the size or sha256 its manifest lists.
    #[error("integrity check failed for {file}: {message}")]
    Integrity { file: String, message: String },
    /// Memory for the model could not be allocated.
    #[error("out of memory: {0}")]
    OutOfMemory(String),
    /// The model (with the asked context) needs more than this backend can
    /// hold: found from the tensor table before anything is allocated.
    #[error("the model does not fit: {0}")]
    TooLarge(String),
    /// The GPU device was lost (driver reset, out of memory, `destroy()`):
    /// nothing more runs on it; load the model again.
    #[error("the GPU device was lost ({0}); load the model again")]
    DeviceLost(String),
}

impl HearthError {
    /// A stable machine-readable name of the error's kind (the `code` of the
    /// errors the wasm bindings throw).
    pub fn code(&self) -> &'static str {
        match self {
            HearthError::NoAdapter(_) => "no_adapter",
            HearthError::DeviceRequest(_) => "device",
            HearthError::Gpu(_) | HearthError::ReadBack(_) => "gpu",
            HearthError::Gguf(_) | HearthError::Model(_) => "model",
            HearthError::ContextFull { .. } => "context_full",
            HearthError::Io { .. } => "io",
            HearthError::InvalidArgument(_) => "invalid_argument",
            HearthError::Tokenizer(_) | HearthError::UnsupportedTokenizer(_) => "tokenizer",
            HearthError::NoChatTemplate | HearthError::ChatTemplate(_) => "chat_template",
            HearthError::Package(_) => "package",
            HearthError::Integrity { .. } => "integrity",
            HearthError::OutOfMemory(_) => "out_of_memory",
            HearthError::TooLarge(_) => "too_large",
            HearthError::DeviceLost(_) => "device_lost",
        }
    }
}

/// Shorthand used across the crate.
pub type Result<T> = std::result::Result<T, HearthError>;
