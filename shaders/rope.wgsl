// RoPE: rotates adjacent pairs (x[2i], x[2i+1]) of each head by the angle of
// the token's position, from a cos/sin table computed in f64 on the CPU
// (WGSL's sin/cos are only accurate within [-π, π]).
//
// Two buffers in one dispatch, either of them possibly empty (0 heads):
//   - `x` (a layer's queries, `heads` heads) rotated in place;
//   - `keys` (its keys as the QKV matmul wrote them, `kv_heads` heads, f32)
//     rotated into the key cache at row pos0 + t, in the cache's element
//     type `kv`: every dimension is written, those past rope_dim as they
//     are, so the keys are rounded once (f16 caches) after the rotation.
//
// Bindings (group 0):
//   0 shape    uniform { heads, head_dim, rope_pairs, kv_heads }
//   1 step     uniform Step (tokens, pos0)
//   2 table    context × rope_pairs vec2 (cos, sin)
//   3 x        tokens × heads × head_dim f32 (a spare buffer when heads = 0)
//   4 keys     tokens × kv_heads × head_dim f32 (likewise when kv_heads = 0)
//   5 k_cache  context × kv_heads × head_dim kv (likewise)
// Dispatch: one thread per (token, head, pair) of x's rotated pairs and of
// every pair of the keys: ceil(tokens * (heads * rope_pairs + kv_heads *
// head_dim / 2) / WG) workgroups (2D-folded).

struct Shape {
    heads: u32,
    head_dim: u32,
    rope_pairs: u32,
    kv_heads: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> shape: Shape;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> table: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read_write> x: array<f32>;
@group(0) @binding(4) var<storage, read> keys: array<f32>;
@group(0) @binding(5) var<storage, read_write> k_cache: array<kv>;

// (a, b) rotated by the angle whose (cos, sin) is the table's entry for
// token t's position and `pair`.
fn rotated(a: f32, b: f32, t: u32, pair: u32) -> vec2<f32> {
    let cs = table[(step.pos0 + t) * shape.rope_pairs + pair];
    return vec2<f32>(a * cs.x - b * cs.y, a * cs.y + b * cs.x);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wg.y * groups.x + wg.x) * WG + lid;
    let queries = step.tokens * shape.heads * shape.rope_pairs;
    if (i < queries) {
        let per_token = shape.heads * shape.rope_pairs;
        let t = i / per_token;
        let head = (i % per_token) / shape.rope_pairs;
        let pair = i % shape.rope_pairs;
        let at = (t * shape.heads + head) * shape.head_dim + 2u * pair;
        let r = rotated(x[at], x[at + 1u], t, pair);
        x[at] = r.x;
        x[at + 1u] = r.y;
        return;
    }
    // The keys: one thread per pair of every dimension.
    let k = i - queries;
    let head_pairs = shape.head_dim / 2u;
    let per_token = shape.kv_heads * head_pairs;
    if (k >= step.tokens * per_token) {
        return;
    }
    let t = k / per_token;
    let pair = k % head_pairs;
    let within = k % per_token; // pair index within the token's row
    let src = t * per_token * 2u + 2u * within;
    var v = vec2<f32>(keys[src], keys[src + 1u]);
    if (pair < shape.rope_pairs) {
        v = rotated(v.x, v.y, t, pair);
    }
    let to = (step.pos0 + t) * per_token * 2u + 2u * within;
    k_cache[to] = kv(v.x);
    k_cache[to + 1u] = kv(v.y);
}
