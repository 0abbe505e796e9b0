// What both attention kernels share (prepended to attention.wgsl, GPUs,
// and to attention_cpu.wgsl, CPU-based adapters): their bindings and where
// a workgroup's (head, token) reads and writes.
//
// Bindings (group 0):
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
