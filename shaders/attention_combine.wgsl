// Flash-decoding's second pass (GPUs, one token): each head's output from
// the runs of keys that shaders/attention.wgsl's workgroups attended to
// apart (its dispatch's z = RUNS). Run i left its maximum score m_i, its
// softmax denominator l_i and its unnormalised weighted sum of values a_i
// in `parts`; with M = max m_i, out = Σ a_i e^(m_i - M) / Σ l_i e^(m_i - M).
// A run without keys (m = -3e38, l = 0, a = 0) adds nothing.
//
// Bindings (group 0): 0 shape (attention_io.wgsl's, declared again here:
// that file's other bindings are not this kernel's), 1 parts, 2 out
// (heads × head_dim f32, the one token's). Dispatch: (heads, 1) workgroups.

struct Shape {
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    scale: f32,
}

override RUNS: u32 = 16u;
const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> shape: Shape;
@group(0) @binding(1) var<storage, read> parts: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> out: array<vec4<f32>>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let hd4 = shape.head_dim / 4u;
    let head = wg.y * shape.heads + wg.x;
    let runs = head * RUNS * (hd4 + 1u);
    var m = -3.0e38;
    for (var i = 0u; i < RUNS; i++) {
        m = max(m, parts[runs + i * (hd4 + 1u)].x);
    }
    for (var d = lid; d < hd4; d += WG) {
        var denom = 0.0;
        var sum = vec4<f32>(0.0);
        for (var i = 0u; i < RUNS; i++) {
            let run = runs + i * (hd4 + 1u);
            let w = exp(parts[run].x - m);
            denom += parts[run].y * w;
            sum += parts[run + 1u + d] * w;
        }
        out[head * hd4 + d] = sum / denom;
    }
}
