// Part of shaders/matmul.wgsl where RoPE is a dispatch of its own (GPUs):
// the QKV product writes the keys in f32, for shaders/rope.wgsl to rotate
// into the cache.

const ROPE_IN_QKV: bool = false;
alias key_out = f32;

fn rope_pair(t: u32, row: u32, ab: vec2<f32>) -> vec2<f32> {
    return ab;
}
