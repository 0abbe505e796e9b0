//! CPU oracle: every GPU kernel's operation in plain Rust, computed in f64 and
//! rounded once to f32, so a GPU result is judged against the exact answer.

/// RMSNorm over each row of `x` (`rows × cols`, row-major):
/// `out[r, i] = x[r, i] / sqrt(mean_j(x[r, j]²) + eps) * w[i]`.
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let cols = w.len();
    assert!(cols > 0 && x.len() % cols == 0, "x must hold whole rows of w.len() values");
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks_exact(cols) {
        let mean_sq = row.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() / cols as f64;
        let scale = 1.0 / (mean_sq + eps as f64).sqrt();
        out.extend(row.iter().zip(w).map(|(&v, &g)| (v as f64 * scale * g as f64) as f32));
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
}
