// RMSNorm over rows: out[t, i] = x[row0 + t, i] / sqrt(mean_j(x[row0 + t, j]^2) + eps) * w[i],
// with add = 1 after a residual add in place, x[row0 + t, i] += y[t, i] (the
// layer program's add and the next norm in one dispatch: a dispatch costs
// tens of microseconds on CPU-based adapters).
//
// Bindings (group 0):
//   0 shape    uniform { cols, eps, add }
//   1 step     uniform Step (tokens, row0)
//   2 x        rows × cols f32 (row-major)
//   3 w        cols f32 (the norm's gain)
//   4 out      tokens × cols f32
//   5 y        tokens × cols f32, read only when add = 1 (otherwise any buffer)
// Dispatch: one workgroup of WG threads per token, 2D-folded (gpu::grid_2d).

struct Shape {
    cols: u32,
    eps: f32,
    add: u32,
    _pad: u32,
}

// Threads per token: 64 on GPUs, 8 on CPU-based adapters (one SIMD batch,
// so the reduction's barriers are cheap: `Variants::rms_norm_threads`).
override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> shape: Shape;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;
@group(0) @binding(3) var<storage, read> w: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read> y: array<f32>;

var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let t = wg.y * groups.x + wg.x;
    if (t >= step.tokens) {
        return; // uniform per workgroup, so the barriers below stay uniform
    }
    let src = (step.row0 + t) * shape.cols;
    let dst = t * shape.cols;

    var sum_sq = 0.0;
    for (var i = lid; i < shape.cols; i += WG) {
        var v = x[src + i];
        if (shape.add == 1u) {
            v += y[dst + i];
            x[src + i] = v; // read back below by this same thread
        }
        sum_sq += v * v;
    }
    partial[lid] = sum_sq;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) { // WG is a power of two
        if (lid < stride) {
            partial[lid] += partial[lid + stride];
        }
        workgroupBarrier();
    }
    let scale = inverseSqrt(partial[0] / f32(shape.cols) + shape.eps);
    for (var i = lid; i < shape.cols; i += WG) {
        out[dst + i] = x[src + i] * scale * w[i];
    }
}
