// Part of shaders/matmul.wgsl for a decode step's attention output
// projection on GPUs (`Variants::attention_in_output_product`): x is the
// attention's runs of keys (binding 3 is shaders/attention.wgsl's `parts`),
// which each workgroup adds up into workgroup memory before its product
// reads them, as shaders/attention_combine.wgsl would in a dispatch of its
// own: on a GPU a decode step is mostly dispatches one after another, and
// the runs each workgroup reads again come from cache (some 40 KB for
// SmolLM2-135M). Only matmul_lanes.wgsl's entry point calls `prepare_x`,
// for one token.
//
// The run of head h numbered r is the vec4s (h · RUNS + r) · (hd4 + 1) on:
// its maximum score m and softmax denominator l, then its unnormalised
// weighted sums of values a; with M = max m_r, the head's output is
// Σ a_r e^(m_r - M) / Σ l_r e^(m_r - M). `shape.head_dim` is the heads'
// size, `shape.cols` their number times that.

override RUNS: u32 = 16u;
// What workgroup memory holds (`gpu::ops::fits_attention_in_product`):
// up to 256 runs in all (heads × RUNS) and 1024 columns.
const MAX_RUN_STATS: u32 = 256u;
const MAX_X_VEC4S: u32 = 256u;

var<workgroup> run_stats: array<vec2<f32>, MAX_RUN_STATS>;
var<workgroup> x_combined: array<vec4<f32>, MAX_X_VEC4S>;

fn x_at(i: u32) -> vec4<f32> {
    return x_combined[i];
}

// Every thread of the workgroup calls it (it has barriers).
fn prepare_x(lid: u32) {
    let hd4 = shape.head_dim / 4u;
    let runs = shape.cols / shape.head_dim * RUNS;
    let stride = hd4 + 1u;
    for (var i = lid; i < runs; i += WG) {
        run_stats[i] = x[i * stride].xy;
    }
    workgroupBarrier();
    for (var v = lid; v < shape.cols / 4u; v += WG) {
        let first = v / hd4 * RUNS;
        var m = -3.0e38;
        for (var r = 0u; r < RUNS; r++) {
            m = max(m, run_stats[first + r].x);
        }
        var denom = 0.0;
        var sum = vec4<f32>(0.0);
        for (var r = 0u; r < RUNS; r++) {
            let w = exp(run_stats[first + r].x - m);
            denom += run_stats[first + r].y * w;
            sum += x[(first + r) * stride + 1u + v % hd4] * w;
        }
        x_combined[v] = sum / denom;
    }
    workgroupBarrier();
}
