// Quantized matrix product: out[t, r] = Σ_c W[r, c] · x[t, c] for every token t.
// One thread per output row, no barriers: neighbouring threads read
// neighbouring words of the row-interleaved weights (see quant.wgsl).
//
// Bindings (group 0):
//   0 shape    uniform { rows, cols, scale_base, out_at_pos }
//   1 step     uniform Step (tokens, pos0)
//   2 weights  rows × cols, quantized (see quant.wgsl)
//   3 x        tokens × cols f32, read as vec4
//   4 out      (pos0 + tokens) × rows f32 when out_at_pos = 1 (the KV cache), else tokens × rows
// Dispatch: ceil(rows / WG) workgroups, 2D-folded (gpu::grid_2d).

struct Shape {
    rows: u32,
    cols: u32,
    scale_base: u32,
    out_at_pos: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> shape: Shape;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> weights: array<u32>;
@group(0) @binding(3) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

// Σ_j W[row, 32k + j] · x[x0 + j] for one token (`x0` a vec4 index). Scales
// are factored out of the sums: Σ (d·q + m)·x = d·Σ q·x + m·Σ x.
fn block_dot(row: u32, k: u32, x0: u32) -> f32 {
    let rows = shape.rows;
    let b = k * rows + row; // scale index
    if (QTYPE == T_Q4_0 || QTYPE == T_Q4_1) {
        var qx = 0.0;
        var sx = vec4<f32>(0.0);
        for (var w = 0u; w < 4u; w++) {
            let word = qword(row, k, w, rows);
            let lo = x[x0 + w];      // values 4w .. 4w+3
            let hi = x[x0 + 4u + w]; // values 16+4w .. 16+4w+3
            qx += dot(nibbles_lo(word), lo) + dot(nibbles_hi(word), hi);
            sx += lo + hi;
        }
        let sum_x = dot(sx, vec4<f32>(1.0));
        if (QTYPE == T_Q4_1) {
            let dm = weights[shape.scale_base + b];
            return f16_to_f32(dm & 0xffffu) * qx + f16_to_f32(dm >> 16u) * sum_x;
        }
        return packed_half(shape.scale_base, b) * (qx - 8.0 * sum_x);
    }
    var qx = 0.0;
    for (var w = 0u; w < 8u; w++) {
        qx += dot(block_vec4(row, k, w, rows), x[x0 + w]);
    }
    if (QTYPE == T_Q8_0) {
        return packed_half(shape.scale_base, b) * qx;
    }
    return qx;
}

// Values 4w .. 4w+3 of block k of `row`, for the 8-bit and float types.
fn block_vec4(row: u32, k: u32, w: u32, rows: u32) -> vec4<f32> {
    if (QTYPE == T_Q8_0) {
        return bytes_i8(qword(row, k, w, rows));
    }
    if (QTYPE == T_F16) {
        let a = qword(row, k, 2u * w, rows);
        let c = qword(row, k, 2u * w + 1u, rows);
        return vec4<f32>(f16_to_f32(a & 0xffffu), f16_to_f32(a >> 16u), f16_to_f32(c & 0xffffu), f16_to_f32(c >> 16u));
    }
    return bitcast<vec4<f32>>(vec4<u32>(qword(row, k, 4u * w, rows), qword(row, k, 4u * w + 1u, rows),
                                         qword(row, k, 4u * w + 2u, rows), qword(row, k, 4u * w + 3u, rows)));
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let row = (wg.y * groups.x + wg.x) * WG + lid;
    if (row >= shape.rows) {
        return;
    }
    let blocks = shape.cols / 32u;
    let row_vec4s = shape.cols / 4u;
    let out_row0 = select(0u, step.pos0, shape.out_at_pos == 1u);
    for (var t = 0u; t < step.tokens; t++) {
        var acc = 0.0;
        for (var k = 0u; k < blocks; k++) {
            acc += block_dot(row, k, t * row_vec4s + 8u * k);
        }
        out[(out_row0 + t) * shape.rows + row] = acc;
    }
}
