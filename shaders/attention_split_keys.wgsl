// Causal attention over the KV cache with grouped-query heads, the variant
// for CPU-based adapters (lavapipe, SwiftShader):
// out[t, h] = softmax_s(q[t, h] · k[s, g] / sqrt(head_dim)) · v[s, g] over
// s = 0 ..= pos0 + t, where g = h / (heads / kv_heads).
//
// The keys are split between the threads: thread i takes keys i, i + WG,
// ... and keeps its own running maximum, denominator and weighted sum of
// values over the whole head (online softmax), so the loop over keys has no
// barrier and reads each key and value row once, 16 bytes at a time. The
// threads' partial results are merged once at the end. On a CPU adapter a
// barrier and every workgroup-memory access are costly (the lanes are
// emulated) while a thread's private array is plain stack memory; a GPU
// wants the opposite, and uses attention.wgsl.
//
// Bindings (group 0), as attention.wgsl:
//   0 shape    uniform { heads, kv_heads, head_dim, scale }
//   1 step     uniform Step (tokens, pos0)
//   2 q        tokens × heads × head_dim f32
//   3 k_cache  context × kv_heads × head_dim kv (the cache's element type, f32 or f16)
//   4 v_cache  context × kv_heads × head_dim kv
//   5 out      tokens × heads × head_dim f32
// Dispatch: (heads, tokens) workgroups; head_dim <= MAX_HEAD_DIM, a multiple of 4.

struct Shape {
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    scale: f32,
}

// Threads per (head, token): one lavapipe SIMD batch, two of SwiftShader's
// (16 made SwiftShader's decode 7 % slower: more batches meet at each barrier).
override WG: u32 = 8u;
const MAX_HEAD_DIM: u32 = 256u;
const MAX_HD4: u32 = MAX_HEAD_DIM / 4u;
// vec4s of partial sums merged per round: WG threads × (MERGE / WG) of
// their dimensions (8 KiB of workgroup memory).
const MERGE: u32 = 512u;

@group(0) @binding(0) var<uniform> shape: Shape;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> k_cache: array<vec4<kv>>;
@group(0) @binding(4) var<storage, read> v_cache: array<vec4<kv>>;
@group(0) @binding(5) var<storage, read_write> out: array<vec4<f32>>;

// Key vec4 i of the cache, in f32.
fn key(i: u32) -> vec4<f32> {
    return vec4<f32>(k_cache[i]);
}

var<workgroup> maxima: array<f32, WG>;
var<workgroup> denominators: array<f32, WG>;
var<workgroup> partial: array<vec4<f32>, MERGE>;

// The attention of head `head` of token t for thread `lid`. The entry point
// is in attention_q_tile.wgsl or attention_q_subgroup.wgsl, which also give
// `load_q` and `q_dot_key`, the query held in workgroup memory or shared in
// the subgroup (`lane`: the thread's subgroup invocation id where used).
fn attend(head: u32, t: u32, lid: u32, lane: u32) {
    let hd4 = shape.head_dim / 4u;
    let kv_stride = shape.kv_heads * hd4;
    let kv_off = (head / (shape.heads / shape.kv_heads)) * hd4;
    let n_keys = step.pos0 + t + 1u;
    let q_off = (t * shape.heads + head) * hd4;
    load_q(q_off, lid);

    // This thread's keys: s = lid, lid + WG, ... Every thread goes round
    // the loop as often as the first (q_dot_key may need all lanes), one
    // past its last key reading the last key again with a weight of 0.
    var running_max = -3.0e38;
    var denom = 0.0;
    var acc: array<vec4<f32>, MAX_HD4>;
    for (var s0 = 0u; s0 < n_keys; s0 += WG) {
        let s = min(s0 + lid, n_keys - 1u);
        let row = s * kv_stride + kv_off;
        let score = q_dot_key(q_off, row, lane) * shape.scale;
        if (s0 + lid >= n_keys) {
            continue;
        }
        let new_max = max(running_max, score);
        let correction = exp(running_max - new_max);
        let weight = exp(score - new_max);
        denom = denom * correction + weight;
        for (var d = 0u; d < hd4; d++) {
            acc[d] = acc[d] * correction + weight * vec4<f32>(v_cache[row + d]);
        }
        running_max = new_max;
    }

    // Merge: every thread's share rescaled to the workgroup's maximum.
    maxima[lid] = running_max;
    workgroupBarrier();
    var max_all = -3.0e38;
    for (var j = 0u; j < WG; j++) {
        max_all = max(max_all, maxima[j]);
    }
    let scale = exp(running_max - max_all);
    denominators[lid] = denom * scale;
    let per_round = MERGE / WG;
    for (var base = 0u; base < hd4; base += per_round) {
        for (var j = 0u; j < per_round && base + j < hd4; j++) {
            partial[j * WG + lid] = acc[base + j] * scale;
        }
        workgroupBarrier();
        for (var d = base + lid; d < min(base + per_round, hd4); d += WG) {
            var sum = vec4<f32>(0.0);
            var denom_all = 0.0;
            for (var j = 0u; j < WG; j++) {
                sum += partial[(d - base) * WG + j];
                denom_all += denominators[j];
            }
            out[q_off + d] = sum / denom_all;
        }
        workgroupBarrier(); // partial is overwritten next round
    }
}
