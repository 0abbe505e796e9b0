// `lanes_sum` of shaders/matmul_lanes.wgsl (GPUs: LANES threads per
// matmul row), the threads' sums added in workgroup memory: for devices
// without subgroups (wgpu's WebGPU backend).

var<workgroup> lane_sums: array<vec4<f32>, WG>;

// Σ of `v` over the LANES threads of this thread's row, in its first lane
// (the others get 0). Every thread of the workgroup must call it.
fn lanes_sum(v: vec4<f32>, lid: u32) -> vec4<f32> {
    lane_sums[lid] = v;
    workgroupBarrier();
    var sum = vec4<f32>(0.0);
    if (lid % LANES == 0u) {
        for (var i = 0u; i < LANES; i++) {
            sum += lane_sums[lid + i];
        }
    }
    workgroupBarrier(); // lane_sums is written again by the next call
    return sum;
}
