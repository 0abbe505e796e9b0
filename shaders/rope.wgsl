// RoPE, in place: rotates adjacent pairs (x[2i], x[2i+1]) of each head by the
// angle of the token's position, from a cos/sin table computed in f64 on the
// CPU (WGSL's sin/cos are only accurate within [-π, π]).
//
// A second buffer (`heads2` heads; a layer's keys, beside its queries) can
// be rotated by the same dispatch.
//
// Bindings (group 0):
//   0 shape    uniform { heads, head_dim, rope_pairs, at_pos, heads2, at_pos2 }
//   1 step     uniform Step (tokens, pos0)
//   2 table    context × rope_pairs vec2 (cos, sin)
//   3 x        rows × heads × head_dim f32; row = pos0 + t when at_pos = 1 (the KV cache), else t
//   4 x2       rows × heads2 × head_dim f32, likewise with at_pos2 (a spare buffer when heads2 = 0)
// Dispatch: one thread per (token, head, pair) of both: ceil(tokens * (heads + heads2) * rope_pairs / WG) workgroups (2D-folded).

struct Shape {
    heads: u32,
    head_dim: u32,
    rope_pairs: u32,
    at_pos: u32,
    heads2: u32,
    at_pos2: u32,
    _pad0: u32,
    _pad1: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> shape: Shape;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> table: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read_write> x: array<f32>;
@group(0) @binding(4) var<storage, read_write> x2: array<f32>;

// Where thread i's pair starts in a buffer of `heads` heads (rows from pos0
// when `at_pos`), and its (cos, sin).
struct Pair {
    base: u32,
    cs: vec2<f32>,
}

fn pair_of(i: u32, heads: u32, at_pos: bool) -> Pair {
    let per_token = heads * shape.rope_pairs;
    let t = i / per_token;
    let head = (i % per_token) / shape.rope_pairs;
    let pair = i % shape.rope_pairs;
    let row = t + select(0u, step.pos0, at_pos);
    let cs = table[(step.pos0 + t) * shape.rope_pairs + pair];
    return Pair((row * heads + head) * shape.head_dim + 2u * pair, cs);
}

// (a, b) rotated by the angle whose (cos, sin) is `cs`.
fn rotated(a: f32, b: f32, cs: vec2<f32>) -> vec2<f32> {
    return vec2<f32>(a * cs.x - b * cs.y, a * cs.y + b * cs.x);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wg.y * groups.x + wg.x) * WG + lid;
    let first = step.tokens * shape.heads * shape.rope_pairs;
    if (i < first) {
        let p = pair_of(i, shape.heads, shape.at_pos == 1u);
        let r = rotated(x[p.base], x[p.base + 1u], p.cs);
        x[p.base] = r.x;
        x[p.base + 1u] = r.y;
    } else if (i - first < step.tokens * shape.heads2 * shape.rope_pairs) {
        let p = pair_of(i - first, shape.heads2, shape.at_pos2 == 1u);
        let r = rotated(x2[p.base], x2[p.base + 1u], p.cs);
        x2[p.base] = r.x;
        x2[p.base + 1u] = r.y;
    }
}
