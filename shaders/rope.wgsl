// RoPE, in place: rotates adjacent pairs (x[2i], x[2i+1]) of each head by the
// angle of the token's position, from a cos/sin table computed in f64 on the
// CPU (WGSL's sin/cos are only accurate within [-π, π]).
//
// Bindings (group 0):
//   0 shape    uniform { heads, head_dim, rope_pairs, at_pos }
//   1 step     uniform Step (tokens, pos0)
//   2 table    context × rope_pairs vec2 (cos, sin)
//   3 x        rows × heads × head_dim f32; row = pos0 + t when at_pos = 1 (the KV cache), else t
// Dispatch: one thread per (token, head, pair): ceil(tokens * heads * rope_pairs / WG) workgroups (2D-folded).

struct Shape {
    heads: u32,
    head_dim: u32,
    rope_pairs: u32,
    at_pos: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> shape: Shape;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> table: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read_write> x: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wg.y * groups.x + wg.x) * WG + lid;
    let per_token = shape.heads * shape.rope_pairs;
    if (i >= step.tokens * per_token) {
        return;
    }
    let t = i / per_token;
    let head = (i % per_token) / shape.rope_pairs;
    let pair = i % shape.rope_pairs;
    let pos = step.pos0 + t;
    let row = t + select(0u, step.pos0, shape.at_pos == 1u);
    let cs = table[pos * shape.rope_pairs + pair];
    let base = (row * shape.heads + head) * shape.head_dim + 2u * pair;
    let a = x[base];
    let b = x[base + 1u];
    x[base] = a * cs.x - b * cs.y;
    x[base + 1u] = a * cs.y + b * cs.x;
}
