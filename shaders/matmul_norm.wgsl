// Part of shaders/matmul.wgsl on GPUs (`Variants::norm_in_matmul`): the
// layer's RMSNorm applied by the product that reads its output (the stacked
// QKV, the stacked gate and up: `flags` bit 1), and the residual add by the
// product before (the attention's output projection, the FFN's down: bit 0),
// so a layer is two dispatches fewer. Each workgroup works out the norms of
// its tokens' rows of x itself (a row is a few KB, read from cache): on a
// GPU a dispatch costs more than that.
//
// A normalised product: Σ_c W[r, c] · x[c] · gain[c] / rms(x) =
// (Σ_c W[r, c] · (x[c] · gain[c])) · norm_scale: x is multiplied by the gain
// as it is read (gain4), and each token's sum by its 1 / rms at the end.

const NORM_FUSED: bool = true;

@group(0) @binding(9) var<storage, read> norm_gain: array<vec4<f32>>;

// Each thread's sums of squares, token by token: WG (64) threads × up to
// 32 tokens (TOKEN_CHUNK). (A size of WG * TOKEN_CHUNK fails in naga 27.)
var<workgroup> norm_partial: array<f32, 2048>;
// 1 / rms of the workgroup's tokens (matmul_lanes.wgsl's chunk of them).
var<workgroup> norm_scales: array<f32, TOKEN_CHUNK>;

fn normalizes() -> bool {
    return (shape.flags & 2u) != 0u;
}

// The gain of x's vec4 i (its columns 4i .. 4i + 3): 1 where not normalised.
fn gain4(i: u32) -> vec4<f32> {
    if (normalizes()) {
        return norm_gain[i];
    }
    return vec4<f32>(1.0);
}

// norm_scales[t - first] = 1 / sqrt(mean(x[t]²) + eps) for tokens first ..
// end - 1 (at most TOKEN_CHUNK), their sums reduced side by side (one tree
// of barriers for all of them). Every thread of the workgroup calls it.
fn compute_norm_scales(first: u32, end: u32, lid: u32) {
    if (!normalizes()) {
        return; // uniform: the flag is the dispatch's
    }
    let cols4 = shape.cols / 4u;
    let n = end - min(first, end);
    for (var t = 0u; t < n; t++) {
        var sum_sq = 0.0;
        for (var i = lid; i < cols4; i += WG) {
            let v = x[(first + t) * cols4 + i];
            sum_sq += dot(v, v);
        }
        norm_partial[t * WG + lid] = sum_sq;
    }
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) { // WG is a power of two
        if (lid < stride) {
            for (var t = 0u; t < n; t++) {
                norm_partial[t * WG + lid] += norm_partial[t * WG + lid + stride];
            }
        }
        workgroupBarrier();
    }
    for (var t = lid; t < n; t += WG) {
        norm_scales[t] = inverseSqrt(norm_partial[t * WG] / f32(shape.cols) + shape.eps);
    }
    workgroupBarrier();
}

// The norm's factor of the chunk's token i (1 where not normalised).
fn norm_scale(i: u32) -> f32 {
    if (normalizes()) {
        return norm_scales[i];
    }
    return 1.0;
}
