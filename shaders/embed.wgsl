// Embedding lookup from quantized rows: out[t, :] = dequant(W[ids[t], :]).
//
// Bindings (group 0):
//   0 shape    uniform { cols, scale_base, vocab }
//   1 step     uniform Step (tokens)
//   2 weights  vocab × cols, quantized (see quant.wgsl)
//   3 ids      tokens u32
//   4 out      tokens × cols f32
// Dispatch: one thread per (token, 32-value block): ceil(tokens * cols / 32 / WG) workgroups (2D-folded).

struct Shape {
    cols: u32,
    scale_base: u32,
    vocab: u32,
    _pad: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> shape: Shape;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> weights: array<u32>;
@group(0) @binding(3) var<storage, read> ids: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let blocks_per_row = shape.cols / 32u;
    let i = (wg.y * groups.x + wg.x) * WG + lid;
    if (i >= step.tokens * blocks_per_row) {
        return;
    }
    let t = i / blocks_per_row;
    let k = i % blocks_per_row;
    let id = min(ids[t], shape.vocab - 1u); // ids are validated on the CPU; never read out of bounds
    let v = dequant_block(row_at(id, shape.vocab, blocks_per_row), k, shape.scale_base);
    let base = t * shape.cols + k * 32u;
    for (var j = 0u; j < 32u; j++) {
        out[base + j] = v[j];
    }
}
