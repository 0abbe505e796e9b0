// Part of shaders/matmul.wgsl where the QKV product applies RoPE as it
// writes (stacked matrices, where a thread holds both rows of each pair:
// `Variants::rope_in_qkv`):
// the keys go straight into the key cache.

const ROPE_IN_QKV: bool = true;
alias key_out = kv;

@group(0) @binding(8) var<storage, read> rope_table: array<vec2<f32>>;

// The pair `ab` of rows `row` and row + 1 of token t, rotated by RoPE where
// they are a query's or a key's rotated dimensions (as shaders/rope.wgsl).
fn rope_pair(t: u32, row: u32, ab: vec2<f32>) -> vec2<f32> {
    if (shape.rope_pairs == 0u || row >= shape.split2) {
        return ab;
    }
    let base = select(0u, shape.split1, row >= shape.split1);
    let pair = (row - base) % shape.head_dim / 2u;
    if (pair >= shape.rope_pairs) {
        return ab;
    }
    let cs = rope_table[(step.pos0 + t) * shape.rope_pairs + pair];
    return vec2<f32>(ab.x * cs.x - ab.y * cs.y, ab.x * cs.y + ab.y * cs.x);
}
