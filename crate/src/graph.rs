//! The model as data: the operations of one forward pass, built once from the
//! config and run by either backend (`gpu::model` turns each into a dispatch,
//! `cpu::model` executes them on the CPU), so the two backends cannot disagree
//! about the architecture.
//!
//! The layer program mirrors `reference::CpuModel::forward` line for line:
//!   h = rms_norm(x) · q, k, v = h·Wq, h·Wk, h·Wv · rope(q, k) · x += attn(q, K, V)·Wo
//!   h = rms_norm(x) · x += (silu(h·Wg) * h·Wu)·Wd
//! Keys and values are written straight into the KV cache by their projections.

use crate::config::ModelConfig;
use crate::weights::layer_tensor;

/// An activation buffer: one row per token of the forward (at most max_batch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Act {
    /// The residual stream (dim).
    X,
    /// A normed input of a projection (dim).
    H,
    /// Queries (q_dim).
    Q,
    /// Attention output (q_dim).
    Attn,
    /// A block's output before the residual add (dim).
    O,
    /// FFN gate, then silu(gate) * up (ffn_dim).
    Gate,
    /// FFN up projection (ffn_dim).
    Up,
}

impl Act {
    pub const ALL: [Act; 7] = [Act::X, Act::H, Act::Q, Act::Attn, Act::O, Act::Gate, Act::Up];

    /// Values per row.
    pub fn width(self, c: &ModelConfig) -> usize {
        match self {
            Act::X | Act::H | Act::O => c.dim,
            Act::Q | Act::Attn => c.q_dim(),
            Act::Gate | Act::Up => c.ffn_dim,
        }
    }
}

/// Where an operation writes rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rows {
    /// Row t of the forward is row t of the activation.
    Act(Act),
    /// Row t is written at position pos0 + t of layer l's key cache.
    Keys(usize),
    /// ... of layer l's value cache.
    Values(usize),
}

/// One operation over the tokens of a forward.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// x = rows `ids` of the embedding matrix.
    Embed { table: String },
    /// out = RMSNorm(x) * gain.
    RmsNorm { x: Act, gain: String, out: Act },
    /// out = x · Wᵀ for the `rows × cols` matrix `w`.
    Matmul { w: String, rows: usize, cols: usize, x: Act, out: Rows },
    /// RoPE in place on `heads` heads of each row.
    Rope { x: Rows, heads: usize },
    /// out = causal grouped-query attention of q over layer's caches.
    Attention { layer: usize, q: Act, out: Act },
    /// x += y.
    Add { x: Act, y: Act },
    /// gate = silu(gate) * up.
    Swiglu { gate: Act, up: Act },
}

/// The embedding and every transformer block, for all the tokens of a forward.
pub fn layer_program(c: &ModelConfig) -> Vec<Op> {
    let (d, qd, kvd, f) = (c.dim, c.q_dim(), c.kv_dim(), c.ffn_dim);
    let mut ops = vec![Op::Embed { table: EMBEDDING.into() }];
    for l in 0..c.n_layers {
        let w = |n: &str| layer_tensor(l, n);
        let matmul = |n: &str, rows, cols, x, out| Op::Matmul { w: w(n), rows, cols, x, out };
        ops.extend([
            Op::RmsNorm { x: Act::X, gain: w("attn_norm"), out: Act::H },
            matmul("attn_q", qd, d, Act::H, Rows::Act(Act::Q)),
            matmul("attn_k", kvd, d, Act::H, Rows::Keys(l)),
            matmul("attn_v", kvd, d, Act::H, Rows::Values(l)),
            Op::Rope { x: Rows::Act(Act::Q), heads: c.n_heads },
            Op::Rope { x: Rows::Keys(l), heads: c.n_kv_heads },
            Op::Attention { layer: l, q: Act::Q, out: Act::Attn },
            matmul("attn_output", d, qd, Act::Attn, Rows::Act(Act::O)),
            Op::Add { x: Act::X, y: Act::O },
            Op::RmsNorm { x: Act::X, gain: w("ffn_norm"), out: Act::H },
            matmul("ffn_gate", f, d, Act::H, Rows::Act(Act::Gate)),
            matmul("ffn_up", f, d, Act::H, Rows::Act(Act::Up)),
            Op::Swiglu { gate: Act::Gate, up: Act::Up },
            matmul("ffn_down", d, f, Act::Gate, Rows::Act(Act::O)),
            Op::Add { x: Act::X, y: Act::O },
        ]);
    }
    ops
}

/// Matrices of a layer that multiply the same input, which the GPU backend
/// stacks in one buffer and multiplies in one dispatch.
pub struct Stack {
    /// True for the FFN's gate and up projections (whose SwiGLU the
    /// dispatch applies); false for the attention's query, key and value.
    pub gate_up: bool,
    /// Names and rows of the parts, in the order of their `Op::Matmul`s.
    pub parts: Vec<(String, usize)>,
    /// Their width.
    pub cols: usize,
}

/// Every layer's stacks: its Q, K and V projections, its gate and up.
pub fn stacked_matrices(c: &ModelConfig) -> Vec<Stack> {
    let mut stacks = Vec::new();
    for l in 0..c.n_layers {
        let part = |n: &str, rows: usize| (layer_tensor(l, n), rows);
        let qkv = vec![part("attn_q", c.q_dim()), part("attn_k", c.kv_dim()), part("attn_v", c.kv_dim())];
        stacks.push(Stack { gate_up: false, parts: qkv, cols: c.dim });
        stacks.push(Stack { gate_up: true, parts: vec![part("ffn_gate", c.ffn_dim), part("ffn_up", c.ffn_dim)], cols: c.dim });
    }
    stacks
}

/// The token embedding's tensor.
pub const EMBEDDING: &str = "token_embd.weight";
/// The final norm's gain, applied before the output head.
pub const OUTPUT_NORM: &str = "output_norm.weight";

/// The output head's matrix (the embedding itself when they are tied).
pub fn output_matrix(c: &ModelConfig) -> &'static str {
    if c.tied_embeddings {
        EMBEDDING
    } else {
        "output.weight"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Backends index their activation buffers by `act as usize`.
    #[test]
    fn all_acts_are_listed_in_declaration_order() {
        assert!(Act::ALL.iter().enumerate().all(|(i, &a)| a as usize == i));
    }
}
