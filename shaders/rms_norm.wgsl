// RMSNorm over rows: out[r, i] = x[r, i] / sqrt(mean_j(x[r, j]^2) + eps) * w[i]
//
// Bindings (group 0):
//   0 params  uniform { rows, cols, eps }
//   1 x       rows × cols f32 (row-major)
//   2 w       cols f32 (the norm's gain)
//   3 out     rows × cols f32
// Dispatch: one workgroup of WG threads per row: (min(rows, 65535), ceil(rows / 65535), 1).

override WG: u32 = 64u;

struct Params {
    rows: u32,
    cols: u32,
    eps: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = wg.y * groups.x + wg.x;
    if (row >= params.rows) {
        return; // uniform per workgroup, so the barriers below stay uniform
    }
    let base = row * params.cols;

    var sum_sq = 0.0;
    for (var i = lid; i < params.cols; i += WG) {
        let v = x[base + i];
        sum_sq += v * v;
    }
    partial[lid] = sum_sq;
    workgroupBarrier();
    // Tree reduction; WG is a power of two.
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) {
            partial[lid] += partial[lid + stride];
        }
        workgroupBarrier();
    }
    let scale = inverseSqrt(partial[0] / f32(params.cols) + params.eps);

    for (var i = lid; i < params.cols; i += WG) {
        out[base + i] = x[base + i] * scale * w[i];
    }
}
