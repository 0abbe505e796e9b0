//! CPU oracle: every GPU kernel's operation and the whole forward pass in
//! plain Rust, llama2.c-style. Activations are f64 and weights are the exact
//! dequantized values, so the only error left is the weights' quantization:
//! this is what the quantized model *is*, and what the GPU is judged against.

use crate::config::{ModelConfig, RopeScaling};
use crate::error::{HearthError, Result};
use crate::quant::dequantize;
use crate::weights::{layer_tensor, TensorSource};

/// RMSNorm over each row of `x` (`rows × cols`, row-major), in f32 for the
/// kernel tests: `out[r, i] = x[r, i] / sqrt(mean_j(x[r, j]²) + eps) * w[i]`.
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let cols = w.len();
    assert!(cols > 0 && x.len().is_multiple_of(cols), "x must hold whole rows of w.len() values");
    let w64: Vec<f64> = w.iter().map(|&v| v as f64).collect();
    x.chunks_exact(cols)
        .flat_map(|row| {
            let row: Vec<f64> = row.iter().map(|&v| v as f64).collect();
            rms_norm_row(&row, &w64, eps as f64)
        })
        .map(|v| v as f32)
        .collect()
}

/// RMSNorm of one row in f64.
pub fn rms_norm_row(x: &[f64], w: &[f64], eps: f64) -> Vec<f64> {
    let mean_sq = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
    let scale = 1.0 / (mean_sq + eps).sqrt();
    x.iter().zip(w).map(|(v, g)| v * scale * g).collect()
}

/// Rotates adjacent pairs `(x[2i], x[2i+1])` of each head by `pos * θ^(-2i/rope_dim)`
/// (GGUF's `llama` tensors are permuted for this "normal" RoPE).
pub fn rope(x: &mut [f64], head_dim: usize, rope_dim: usize, pos: f64, theta: f64) {
    for head in x.chunks_exact_mut(head_dim) {
        for i in 0..rope_dim / 2 {
            let angle = pos * theta.powf(-2.0 * i as f64 / rope_dim as f64);
            let (sin, cos) = angle.sin_cos();
            let (a, b) = (head[2 * i], head[2 * i + 1]);
            head[2 * i] = a * cos - b * sin;
            head[2 * i + 1] = a * sin + b * cos;
        }
    }
}

/// `silu(gate) * up`, the SwiGLU activation.
pub fn swiglu(gate: &[f64], up: &[f64]) -> Vec<f64> {
    gate.iter().zip(up).map(|(g, u)| g / (1.0 + (-g).exp()) * u).collect()
}

/// A dequantized weight matrix, `rows × cols`, row-major (`out = W · x`).
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

impl Matrix {
    fn load(src: &dyn TensorSource, name: &str, rows: usize, cols: usize) -> Result<Self> {
        let t = src.tensor(name)?;
        if t.shape != [rows, cols] {
            return Err(HearthError::Model(format!("{name} has shape {:?}, expected [{rows}, {cols}]", t.shape)));
        }
        Ok(Matrix { rows, cols, data: dequantize(t.ty, t.bytes, rows * cols)? })
    }

    pub fn row(&self, r: usize) -> &[f32] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }

    /// `W · x` for every vector in `xs` (each of length `cols`). Each weight
    /// row is read once for all vectors; rows are split across threads where
    /// there are several (wasm32-unknown-unknown has one and cannot spawn).
    pub fn matmul(&self, xs: &[Vec<f64>]) -> Vec<Vec<f64>> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(self.rows.max(1));
        let chunk = self.rows.div_ceil(threads);
        let parts: Vec<Vec<f64>> = if threads <= 1 {
            vec![self.rows_times(0..self.rows, xs)]
        } else {
            std::thread::scope(|s| {
                let handles: Vec<_> = (0..threads)
                    .map(|t| s.spawn(move || self.rows_times(t * chunk..((t + 1) * chunk).min(self.rows), xs)))
                    .collect();
                handles.into_iter().map(|h| h.join().expect("matmul thread")).collect()
            })
        };
        let mut out = vec![vec![0.0; self.rows]; xs.len()];
        for (t, part) in parts.iter().enumerate() {
            for (i, v) in part.iter().enumerate() {
                out[i % xs.len()][t * chunk + i / xs.len()] = *v;
            }
        }
        out
    }

    /// Dot products of `rows` of W with every vector of `xs`, row-major.
    fn rows_times(&self, rows: std::ops::Range<usize>, xs: &[Vec<f64>]) -> Vec<f64> {
        let mut part = Vec::with_capacity(rows.len() * xs.len());
        for r in rows {
            let w = self.row(r);
            part.extend(xs.iter().map(|x| w.iter().zip(x).map(|(&a, b)| a as f64 * b).sum::<f64>()));
        }
        part
    }
}

fn load_vector(src: &dyn TensorSource, name: &str, len: usize) -> Result<Vec<f64>> {
    let t = src.tensor(name)?;
    if t.elements() != len {
        return Err(HearthError::Model(format!("{name} has {} values, expected {len}", t.elements())));
    }
    Ok(dequantize(t.ty, t.bytes, len)?.into_iter().map(f64::from).collect())
}

struct Layer {
    attn_norm: Vec<f64>,
    wq: Matrix,
    wk: Matrix,
    wv: Matrix,
    wo: Matrix,
    ffn_norm: Vec<f64>,
    w_gate: Matrix,
    w_up: Matrix,
    w_down: Matrix,
}

/// Keys and values of every position seen so far, per layer (`positions × kv_dim`).
#[derive(Default, Clone)]
pub struct CpuKvCache {
    k: Vec<Vec<Vec<f64>>>,
    v: Vec<Vec<Vec<f64>>>,
}

impl CpuKvCache {
    pub fn len(&self) -> usize {
        self.k.first().map_or(0, Vec::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The whole model on the CPU, weights dequantized to f32.
pub struct CpuModel {
    pub config: ModelConfig,
    embed: Matrix,
    layers: Vec<Layer>,
    out_norm: Vec<f64>,
    output: Option<Matrix>,
}

impl CpuModel {
    pub fn load(config: ModelConfig, src: &dyn TensorSource) -> Result<Self> {
        let c = &config;
        let (d, q, kv, f) = (c.dim, c.q_dim(), c.kv_dim(), c.ffn_dim);
        let layers = (0..c.n_layers)
            .map(|l| {
                let m = |name: &str, rows, cols| Matrix::load(src, &layer_tensor(l, name), rows, cols);
                Ok(Layer {
                    attn_norm: load_vector(src, &layer_tensor(l, "attn_norm"), d)?,
                    wq: m("attn_q", q, d)?,
                    wk: m("attn_k", kv, d)?,
                    wv: m("attn_v", kv, d)?,
                    wo: m("attn_output", d, q)?,
                    ffn_norm: load_vector(src, &layer_tensor(l, "ffn_norm"), d)?,
                    w_gate: m("ffn_gate", f, d)?,
                    w_up: m("ffn_up", f, d)?,
                    w_down: m("ffn_down", d, f)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(CpuModel {
            embed: Matrix::load(src, "token_embd.weight", c.vocab_size, d)?,
            out_norm: load_vector(src, "output_norm.weight", d)?,
            output: if c.tied_embeddings { None } else { Some(Matrix::load(src, "output.weight", c.vocab_size, d)?) },
            layers,
            config,
        })
    }

    /// Logits (one `vocab_size` row per token) for `tokens`, placed after the
    /// positions `cache` already holds; the cache is extended.
    pub fn forward(&self, tokens: &[u32], cache: &mut CpuKvCache) -> Result<Vec<Vec<f32>>> {
        let c = &self.config;
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= c.vocab_size) {
            return Err(HearthError::InvalidArgument(format!("token id {bad} is outside the vocabulary")));
        }
        let start = cache.len();
        if start + tokens.len() > c.context_length {
            return Err(HearthError::InvalidArgument(format!(
                "{} positions exceed the context length {}",
                start + tokens.len(),
                c.context_length
            )));
        }
        cache.k.resize(c.n_layers, Vec::new());
        cache.v.resize(c.n_layers, Vec::new());
        let eps = c.rms_eps as f64;
        let pos_scale = match c.rope_scaling {
            RopeScaling::None => 1.0,
            RopeScaling::Linear { factor } => 1.0 / factor as f64,
        };

        // x: tokens × dim, the residual stream.
        let mut x: Vec<Vec<f64>> =
            tokens.iter().map(|&t| self.embed.row(t as usize).iter().map(|&v| v as f64).collect()).collect();
        for (l, layer) in self.layers.iter().enumerate() {
            let h: Vec<Vec<f64>> = x.iter().map(|r| rms_norm_row(r, &layer.attn_norm, eps)).collect();
            let mut q = layer.wq.matmul(&h); // tokens × q_dim
            let mut k = layer.wk.matmul(&h); // tokens × kv_dim
            let v = layer.wv.matmul(&h); // tokens × kv_dim
            for (t, (qt, kt)) in q.iter_mut().zip(&mut k).enumerate() {
                let pos = (start + t) as f64 * pos_scale;
                rope(qt, c.head_dim, c.rope_dim, pos, c.rope_theta as f64);
                rope(kt, c.head_dim, c.rope_dim, pos, c.rope_theta as f64);
            }
            cache.k[l].extend(k);
            cache.v[l].extend(v);
            let attn: Vec<Vec<f64>> =
                q.iter().enumerate().map(|(t, qt)| self.attend(qt, &cache.k[l], &cache.v[l], start + t)).collect();
            let o = layer.wo.matmul(&attn);
            x.iter_mut().zip(&o).for_each(|(xr, or)| xr.iter_mut().zip(or).for_each(|(a, b)| *a += b));

            let h: Vec<Vec<f64>> = x.iter().map(|r| rms_norm_row(r, &layer.ffn_norm, eps)).collect();
            let gate = layer.w_gate.matmul(&h);
            let up = layer.w_up.matmul(&h);
            let act: Vec<Vec<f64>> = gate.iter().zip(&up).map(|(g, u)| swiglu(g, u)).collect();
            let down = layer.w_down.matmul(&act);
            x.iter_mut().zip(&down).for_each(|(xr, dr)| xr.iter_mut().zip(dr).for_each(|(a, b)| *a += b));
        }
        let h: Vec<Vec<f64>> = x.iter().map(|r| rms_norm_row(r, &self.out_norm, eps)).collect();
        let logits = self.output.as_ref().unwrap_or(&self.embed).matmul(&h);
        Ok(logits.into_iter().map(|r| r.into_iter().map(|v| v as f32).collect()).collect())
    }

    /// Causal attention of one query (all heads) at position `pos` over
    /// `keys[0..=pos]`, with grouped-query sharing of KV heads.
    fn attend(&self, q: &[f64], keys: &[Vec<f64>], values: &[Vec<f64>], pos: usize) -> Vec<f64> {
        let c = &self.config;
        attention(q, keys, values, pos, c.n_heads, c.n_kv_heads, c.head_dim)
    }
}

/// Causal attention of one query `q` (`heads × head_dim`) at position `pos`
/// over `keys[0..=pos]` and `values[0..=pos]` (each `kv_heads × head_dim`):
/// query head `h` reads KV head `h / (heads / kv_heads)`; scores are scaled
/// by `1 / sqrt(head_dim)` and softmaxed in f64.
pub fn attention(
    q: &[f64],
    keys: &[Vec<f64>],
    values: &[Vec<f64>],
    pos: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
) -> Vec<f64> {
    let hd = head_dim;
    let group = heads / kv_heads;
    let scale = 1.0 / (hd as f64).sqrt();
    let mut out = vec![0.0; heads * hd];
    for h in 0..heads {
        let kv = (h / group) * hd;
        let qh = &q[h * hd..(h + 1) * hd];
        let scores: Vec<f64> = keys[..=pos]
            .iter()
            .map(|k| qh.iter().zip(&k[kv..kv + hd]).map(|(a, b)| a * b).sum::<f64>() * scale)
            .collect();
        let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
        let total: f64 = weights.iter().sum();
        let oh = &mut out[h * hd..(h + 1) * hd];
        for (w, v) in weights.iter().zip(&values[..=pos]) {
            oh.iter_mut().zip(&v[kv..kv + hd]).for_each(|(o, x)| *o += w / total * x);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_norm_of_constant_row_is_the_gain() {
        // mean(x²) = 4 for x = ±2, so x / 2 * w, with eps = 0.
        let out = rms_norm(&[2.0, -2.0, 2.0, 2.0], &[1.0, 0.5, -1.0, 3.0], 0.0);
        assert_eq!(out, vec![1.0, -0.5, -1.0, 3.0]);
    }

    #[test]
    fn rms_norm_eps_keeps_zero_rows_finite() {
        let out = rms_norm(&[0.0; 6], &[1.0, 2.0, 3.0], 1e-5);
        assert!(out.iter().all(|v| *v == 0.0));
    }

    #[test]
    fn rope_rotates_pairs_and_keeps_norms() {
        let mut x = vec![1.0, 0.0, 0.0, 1.0];
        rope(&mut x, 4, 4, 1.0, 10_000.0);
        // Pair 0 turns by 1 rad, pair 1 by 1e-2 rad.
        assert!((x[0] - 1f64.cos()).abs() < 1e-12 && (x[1] - 1f64.sin()).abs() < 1e-12);
        assert!((x[2] + 0.01f64.sin()).abs() < 1e-12 && (x[3] - 0.01f64.cos()).abs() < 1e-12);
    }

    #[test]
    fn matmul_splits_rows_across_threads_correctly() {
        let m = Matrix { rows: 7, cols: 3, data: (0..21).map(|v| v as f32).collect() };
        let xs = vec![vec![1.0, 0.0, 0.0], vec![0.0, 1.0, 2.0]];
        let out = m.matmul(&xs);
        assert_eq!((out[0].len(), out[1].len()), (7, 7));
        for (r, (a, b)) in out[0].iter().zip(&out[1]).enumerate() {
            assert_eq!(*a, (3 * r) as f64);
            assert_eq!(*b, (3 * r + 1) as f64 + 2.0 * (3 * r + 2) as f64);
        }
    }
}
