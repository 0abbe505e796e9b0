// `lanes_sum` of shaders/matmul_lanes.wgsl (GPUs: LANES threads per
// matmul row), the threads' sums added by subgroup shuffles: no workgroup
// memory and no barrier. Needs subgroups of at least LANES lanes (a power
// of two), made of consecutive local invocations, as drivers make them for
// one-dimensional workgroups: a row's lanes are then neighbours in one
// subgroup.

// Σ of `v` over the LANES threads of this thread's row, in each of them.
fn lanes_sum(v: vec4<f32>, lid: u32) -> vec4<f32> {
    var sum = v;
    for (var m = 1u; m < LANES; m *= 2u) {
        sum += subgroupShuffleXor(sum, m);
    }
    return sum;
}
