// Quantized matrix product: out[t, r] = Σ_c W[r, c] · x[t, c] for every token t.
// Decode is the tokens = 1 case; prefill reuses each dequantized weight block
// for TT tokens at a time.
//
// Bindings (group 0):
//   0 shape    uniform { rows, cols, scale_base, out_at_pos }
//   1 step     uniform Step (tokens, pos0)
//   2 weights  rows × cols, quantized (see quant.wgsl)
//   3 x        tokens × cols f32
//   4 out      (pos0 + tokens) × rows f32 when out_at_pos = 1 (the KV cache), else tokens × rows
// Dispatch: (rows folded into x/y as in gpu::grid_2d, ceil(tokens / TT)); WG threads share a row.

struct Shape {
    rows: u32,
    cols: u32,
    scale_base: u32,
    out_at_pos: u32,
}

override WG: u32 = 64u;
const TT: u32 = 8u;

@group(0) @binding(0) var<uniform> shape: Shape;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> weights: array<u32>;
@group(0) @binding(3) var<storage, read> x: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

var<workgroup> partial: array<f32, TT * WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let row = wg.y * groups.x + wg.x;
    let t0 = wg.z * TT;
    if (row >= shape.rows || t0 >= step.tokens) {
        return; // uniform per workgroup
    }
    let nt = min(TT, step.tokens - t0);
    let blocks_per_row = shape.cols / 32u;

    var acc: array<f32, TT>;
    for (var k = lid; k < blocks_per_row; k += WG) {
        let v = dequant_block(row * blocks_per_row + k, shape.scale_base);
        for (var tt = 0u; tt < nt; tt++) {
            let xb = (t0 + tt) * shape.cols + k * 32u;
            var s = 0.0;
            for (var j = 0u; j < 32u; j++) {
                s += v[j] * x[xb + j];
            }
            acc[tt] += s;
        }
    }
    for (var tt = 0u; tt < TT; tt++) {
        partial[tt * WG + lid] = acc[tt];
    }
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) {
            for (var tt = 0u; tt < nt; tt++) {
                partial[tt * WG + lid] += partial[tt * WG + lid + stride];
            }
        }
        workgroupBarrier();
    }
    if (lid < nt) {
        let out_row = t0 + lid + select(0u, step.pos0, shape.out_at_pos == 1u);
        out[out_row * shape.rows + row] = partial[lid * WG];
    }
}
