// Causal attention over the KV cache with grouped-query heads:
// out[t, h] = softmax_s(q[t, h] · k[s, g] / sqrt(head_dim)) · v[s, g] over
// s = 0 ..= pos0 + t, where g = h / (heads / kv_heads). One pass over the
// keys with a running maximum (online softmax), WG keys at a time.
//
// Bindings (group 0):
//   0 shape    uniform { heads, kv_heads, head_dim, scale }
//   1 step     uniform Step (tokens, pos0)
//   2 q        tokens × heads × head_dim f32
//   3 k_cache  context × kv_heads × head_dim f32
//   4 v_cache  context × kv_heads × head_dim f32
//   5 out      tokens × heads × head_dim f32
// Dispatch: (heads, tokens) workgroups; head_dim <= 4 * WG.

struct Shape {
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    scale: f32,
}

override WG: u32 = 64u;
const MAX_HEAD_DIM: u32 = 256u;

@group(0) @binding(0) var<uniform> shape: Shape;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> q: array<f32>;
@group(0) @binding(3) var<storage, read> k_cache: array<f32>;
@group(0) @binding(4) var<storage, read> v_cache: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

var<workgroup> q_tile: array<f32, MAX_HEAD_DIM>;
var<workgroup> scores: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let head = wg.x;
    let t = wg.y;
    let hd = shape.head_dim;
    let kv_stride = shape.kv_heads * hd;
    let kv_off = (head / (shape.heads / shape.kv_heads)) * hd;
    let n_keys = step.pos0 + t + 1u;
    let q_off = (t * shape.heads + head) * hd;

    for (var d = lid; d < hd; d += WG) {
        q_tile[d] = q[q_off + d];
    }
    workgroupBarrier();

    var running_max = -3.0e38;
    var denom = 0.0;
    var acc = array<f32, 4>(0.0, 0.0, 0.0, 0.0); // dims lid, lid + WG, ...
    for (var s0 = 0u; s0 < n_keys; s0 += WG) {
        let s = s0 + lid;
        var score = -3.0e38;
        if (s < n_keys) {
            var dot = 0.0;
            for (var d = 0u; d < hd; d++) {
                dot += q_tile[d] * k_cache[s * kv_stride + kv_off + d];
            }
            score = dot * shape.scale;
        }
        scores[lid] = score;
        workgroupBarrier();

        let count = min(WG, n_keys - s0);
        var chunk_max = running_max;
        for (var j = 0u; j < count; j++) {
            chunk_max = max(chunk_max, scores[j]);
        }
        let correction = exp(running_max - chunk_max);
        denom *= correction;
        for (var slot = 0u; slot < 4u; slot++) {
            acc[slot] *= correction;
        }
        for (var j = 0u; j < count; j++) {
            let p = exp(scores[j] - chunk_max);
            denom += p;
            let v_row = (s0 + j) * kv_stride + kv_off;
            for (var slot = 0u; slot < 4u; slot++) {
                let d = lid + slot * WG;
                if (d < hd) {
                    acc[slot] += p * v_cache[v_row + d];
                }
            }
        }
        running_max = chunk_max;
        workgroupBarrier(); // scores are overwritten next round
    }
    for (var slot = 0u; slot < 4u; slot++) {
        let d = lid + slot * WG;
        if (d < hd) {
            out[q_off + d] = acc[slot] / denom;
        }
    }
}
