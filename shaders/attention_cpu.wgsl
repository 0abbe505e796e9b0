// Causal attention over the KV cache with grouped-query heads, for CPU-based
// adapters (lavapipe, SwiftShader):
// out[t, h] = softmax_s(q[t, h] · k[s, g] / sqrt(head_dim)) · v[s, g] over
// s = 0 ..= pos0 + t, where g = h / (heads / kv_heads).
//
// A workgroup of WG threads per (head, token). For a batch of keys, each
// thread scores keys of its own (a whole key row, read 16 bytes at a time,
// with no barrier in the dot product); then the threads split the head's
// dimensions, and each sums the weighted value rows of the whole batch for
// its dimensions, so every value is read once and each running sum stays
// with one thread. A CPU adapter emulates its lanes: each lane's load is a
// scalar load, a barrier suspends the lanes, and a thread's array indexed
// by a loop variable lives in memory. This file holds what the two
// variants share; the kernel itself comes after it:
//   attention_cpu_subgroup.wgsl: batches of 8 keys, their scores' maximum,
//     sum and weights shared by subgroup operations (llvmpipe);
//   attention_cpu_workgroup.wgsl: batches of up to 256 keys, their weights
//     in workgroup memory (SwiftShader, and adapters without subgroups).
// A GPU uses attention.wgsl.
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

// Threads per (head, token): one lavapipe SIMD batch (and subgroup), two of
// SwiftShader's (16 made SwiftShader's decode slower, as more batches meet
// at each barrier; 4 was no faster).
const WG: u32 = 8u;
const MAX_HEAD_DIM: u32 = 256u;
const MAX_HD4: u32 = MAX_HEAD_DIM / 4u;

@group(0) @binding(0) var<uniform> shape: Shape;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> k_cache: array<vec4<kv>>;
@group(0) @binding(4) var<storage, read> v_cache: array<vec4<kv>>;
@group(0) @binding(5) var<storage, read_write> out: array<vec4<f32>>;

// Vec4 i of the key or the value cache, in f32.
fn key(i: u32) -> vec4<f32> {
    return vec4<f32>(k_cache[i]);
}
fn value(i: u32) -> vec4<f32> {
    return vec4<f32>(v_cache[i]);
}

// What the workgroup of a (head, token) reads and writes, in vec4s.
struct Head {
    hd4: u32,       // head_dim / 4
    kv_stride: u32, // from one key (or value) row to the next
    kv_off: u32,    // the head's KV head within a row
    q_off: u32,     // its query and its output
    n_keys: u32,    // the keys it attends to: pos0 + t + 1
}

fn head_at(head: u32, t: u32) -> Head {
    let hd4 = shape.head_dim / 4u;
    let kv_off = (head / (shape.heads / shape.kv_heads)) * hd4;
    return Head(hd4, shape.kv_heads * hd4, kv_off, (t * shape.heads + head) * hd4, step.pos0 + t + 1u);
}
