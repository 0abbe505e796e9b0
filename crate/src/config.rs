//! The model's architecture, read from GGUF metadata.
//!
//! A key the model needs and the file lacks is an error naming the key. The
//! only values not read from the file are those the GGUF specification itself
//! defines as the meaning of an absent key (noted at each one).

use crate::error::{HearthError, Result};
use crate::formats::gguf::GgufFile;
use serde::{Deserialize, Serialize};

/// How positions are scaled before RoPE (`{arch}.rope.scaling.type`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum RopeScaling {
    None,
    /// Positions divided by `factor` (`{arch}.rope.scaling.factor`).
    Linear { factor: f32 },
}

/// A Llama-family decoder's shape and constants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub architecture: String,
    pub n_layers: usize,
    /// Width of the residual stream.
    pub dim: usize,
    pub n_heads: usize,
    /// Key/value heads (grouped-query attention when below `n_heads`).
    pub n_kv_heads: usize,
    pub head_dim: usize,
    /// Width of the SwiGLU hidden layer.
    pub ffn_dim: usize,
    pub vocab_size: usize,
    /// Longest sequence the model was trained for.
    pub context_length: usize,
    pub rms_eps: f32,
    pub rope_theta: f32,
    /// Leading dimensions of each head that RoPE rotates (all of them, usually).
    pub rope_dim: usize,
    pub rope_scaling: RopeScaling,
    /// True when the output projection reuses the token embedding.
    pub tied_embeddings: bool,
}

impl ModelConfig {
    pub fn from_gguf(gguf: &GgufFile) -> Result<Self> {
        let arch = gguf
            .get("general.architecture")
            .and_then(|v| v.as_str())
            .ok_or_else(|| missing("general.architecture"))?
            .to_string();
        // Llama-family models that share llama's tensor names and RoPE.
        if !["llama", "mistral"].contains(&arch.as_str()) {
            return Err(HearthError::Model(format!("architecture {arch:?} is not supported (llama is)")));
        }
        let key = |k: &str| format!("{arch}.{k}");
        let uint = |k: &str| -> Result<usize> {
            let k = key(k);
            let v = gguf.get(&k).ok_or_else(|| missing(&k))?;
            v.as_u64()
                .and_then(|v| usize::try_from(v).ok())
                .ok_or_else(|| HearthError::Model(format!("{k} is {v:?}, not a non-negative integer")))
        };
        let float = |k: &str| -> Result<Option<f32>> {
            let k = key(k);
            match gguf.get(&k) {
                None => Ok(None),
                Some(v) => v
                    .as_f64()
                    .map(|f| Some(f as f32))
                    .ok_or_else(|| HearthError::Model(format!("{k} is {v:?}, not a number"))),
            }
        };

        let n_layers = uint("block_count")?;
        let dim = uint("embedding_length")?;
        let n_heads = uint("attention.head_count")?;
        // GGUF spec: an absent head_count_kv means one KV head per query head.
        let n_kv_heads = if gguf.get(&key("attention.head_count_kv")).is_some() {
            uint("attention.head_count_kv")?
        } else {
            n_heads
        };
        let ffn_dim = uint("feed_forward_length")?;
        let context_length = uint("context_length")?;
        let rms_eps = float("attention.layer_norm_rms_epsilon")?
            .ok_or_else(|| missing(&key("attention.layer_norm_rms_epsilon")))?;
        if n_heads == 0 || n_kv_heads == 0 || dim % n_heads != 0 || n_heads % n_kv_heads != 0 {
            return Err(HearthError::Model(format!(
                "inconsistent attention shape: dim {dim}, {n_heads} heads, {n_kv_heads} KV heads"
            )));
        }
        // GGUF spec: key_length defaults to embedding_length / head_count.
        let head_dim = match gguf.get(&key("attention.key_length")) {
            Some(_) => uint("attention.key_length")?,
            None => dim / n_heads,
        };
        // GGUF spec: rope.freq_base defaults to 10000, rope.dimension_count to the head size.
        let rope_theta = float("rope.freq_base")?.unwrap_or(10_000.0);
        let rope_dim = match gguf.get(&key("rope.dimension_count")) {
            Some(_) => uint("rope.dimension_count")?,
            None => head_dim,
        };
        let rope_scaling = match gguf.get(&key("rope.scaling.type")).map(|v| v.as_str()) {
            None | Some(Some("none")) => RopeScaling::None,
            Some(Some("linear")) => RopeScaling::Linear {
                factor: float("rope.scaling.factor")?.ok_or_else(|| missing(&key("rope.scaling.factor")))?,
            },
            Some(other) => {
                return Err(HearthError::Model(format!("RoPE scaling {other:?} is not supported (none, linear are)")))
            }
        };
        let vocab_size = match gguf.get(&key("vocab_size")) {
            Some(_) => uint("vocab_size")?,
            None => gguf
                .get("tokenizer.ggml.tokens")
                .and_then(|v| v.as_array())
                .map(|a| a.len())
                .ok_or_else(|| missing("tokenizer.ggml.tokens"))?,
        };
        let tied_embeddings = gguf.tensor("output.weight").is_none();

        let config = ModelConfig {
            architecture: arch,
            n_layers,
            dim,
            n_heads,
            n_kv_heads,
            head_dim,
            ffn_dim,
            vocab_size,
            context_length,
            rms_eps,
            rope_theta,
            rope_dim,
            rope_scaling,
            tied_embeddings,
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks the sizes and constants the engine relies on: non-zero sizes,
    /// heads that share KV heads evenly, even head and RoPE sizes, finite
    /// constants, and every size within [`LIMITS`] so that no product of them
    /// overflows and no hostile file (or manifest) makes the engine reserve
    /// memory for a model no machine could hold.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(HearthError::Model(what));
        if self.n_layers == 0 || self.dim == 0 || self.ffn_dim == 0 || self.vocab_size == 0 {
            return bad(format!("empty model: {self:?}"));
        }
        if self.n_heads == 0 || self.n_kv_heads == 0 || !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return bad(format!("{} attention heads cannot share {} KV heads", self.n_heads, self.n_kv_heads));
        }
        if self.head_dim == 0
            || !self.head_dim.is_multiple_of(2)
            || self.rope_dim > self.head_dim
            || !self.rope_dim.is_multiple_of(2)
        {
            return bad(format!("head size {} / RoPE size {} must be even", self.head_dim, self.rope_dim));
        }
        if self.context_length == 0 {
            return bad("context_length is 0".into());
        }
        let q_dim = self.n_heads.saturating_mul(self.head_dim);
        let sizes = [
            ("block_count", self.n_layers, LIMITS.layers),
            ("embedding_length", self.dim, LIMITS.width),
            ("feed_forward_length", self.ffn_dim, LIMITS.width),
            ("head_count", self.n_heads, LIMITS.heads),
            ("key_length", self.head_dim, LIMITS.width),
            ("head_count * key_length", q_dim, LIMITS.width),
            ("vocab_size", self.vocab_size, LIMITS.vocab),
            ("context_length", self.context_length, LIMITS.context),
        ];
        if let Some((name, value, limit)) = sizes.into_iter().find(|&(_, v, limit)| v > limit) {
            return bad(format!("{name} {value} is beyond what the engine accepts ({limit})"));
        }
        if !(self.rms_eps.is_finite() && self.rms_eps >= 0.0) {
            return bad(format!("RMS norm epsilon {} is not a finite non-negative number", self.rms_eps));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return bad(format!("RoPE base {} is not a finite positive number", self.rope_theta));
        }
        if let RopeScaling::Linear { factor } = self.rope_scaling {
            if !(factor.is_finite() && factor > 0.0) {
                return bad(format!("RoPE scaling factor {factor} is not a finite positive number"));
            }
        }
        Ok(())
    }

    /// Width of the query projection's output.
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }

    /// Width of the key (and value) projection's output.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }
}

/// Upper bounds of a model's sizes, far above any released model's (the
/// largest have about 130 layers, a width of 16k to 50k and 260k tokens) and
/// far below what would overflow or exhaust memory on wasm32.
pub struct Limits {
    pub layers: usize,
    /// Residual stream, FFN hidden layer, a head, all heads together.
    pub width: usize,
    pub heads: usize,
    pub vocab: usize,
    pub context: usize,
}

pub const LIMITS: Limits = Limits { layers: 1 << 12, width: 1 << 20, heads: 1 << 14, vocab: 1 << 24, context: 1 << 30 };

fn missing(key: &str) -> HearthError {
    HearthError::Model(format!("metadata key {key} is missing"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::gguf::tests::Writer;

    fn llama(skip: &str) -> GgufFile {
        let mut w = Writer::new(3).kv_str("general.architecture", "llama");
        for (k, v) in [
            ("llama.block_count", 30),
            ("llama.embedding_length", 576),
            ("llama.attention.head_count", 9),
            ("llama.attention.head_count_kv", 3),
            ("llama.feed_forward_length", 1536),
            ("llama.context_length", 8192),
            ("llama.vocab_size", 49152),
        ] {
            if k != skip {
                w = w.kv_u32(k, v);
            }
        }
        if skip != "llama.attention.layer_norm_rms_epsilon" {
            w = w.kv_f32("llama.attention.layer_norm_rms_epsilon", 1e-5);
        }
        let bytes = w.kv_f32("llama.rope.freq_base", 100_000.0).build();
        GgufFile::parse(&bytes, None).unwrap()
    }

    #[test]
    fn reads_a_llama_config() {
        let c = ModelConfig::from_gguf(&llama("")).unwrap();
        assert_eq!((c.n_layers, c.dim, c.n_heads, c.n_kv_heads, c.head_dim), (30, 576, 9, 3, 64));
        assert_eq!((c.ffn_dim, c.vocab_size, c.context_length, c.rope_dim), (1536, 49152, 8192, 64));
        assert_eq!((c.rms_eps, c.rope_theta, c.rope_scaling), (1e-5, 100_000.0, RopeScaling::None));
        assert!(c.tied_embeddings, "no output.weight tensor");
        assert_eq!((c.q_dim(), c.kv_dim()), (576, 192));
    }

    #[test]
    fn a_missing_key_is_an_error_naming_it() {
        for key in ["llama.block_count", "llama.context_length", "llama.attention.layer_norm_rms_epsilon"] {
            let err = ModelConfig::from_gguf(&llama(key)).unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
        }
        // Only the spec's own default applies: no head_count_kv means MHA.
        assert_eq!(ModelConfig::from_gguf(&llama("llama.attention.head_count_kv")).unwrap().n_kv_heads, 9);
    }

    #[test]
    fn other_architectures_and_bad_shapes_are_refused() {
        let bytes = Writer::new(3).kv_str("general.architecture", "gemma3").build();
        let err = ModelConfig::from_gguf(&GgufFile::parse(&bytes, None).unwrap()).unwrap_err();
        assert!(err.to_string().contains("gemma3"), "{err}");
        let bytes = Writer::new(3)
            .kv_str("general.architecture", "llama")
            .kv_u32("llama.block_count", 1)
            .kv_u32("llama.embedding_length", 10)
            .kv_u32("llama.attention.head_count", 3)
            .kv_u32("llama.feed_forward_length", 8)
            .kv_u32("llama.context_length", 8)
            .kv_u32("llama.vocab_size", 8)
            .kv_f32("llama.attention.layer_norm_rms_epsilon", 1e-5)
            .build();
        assert!(ModelConfig::from_gguf(&GgufFile::parse(&bytes, None).unwrap()).is_err(), "10 is not divisible by 3 heads");
    }
}
