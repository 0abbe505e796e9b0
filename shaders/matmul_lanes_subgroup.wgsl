// Entry point of shaders/matmul.wgsl with LANES threads per row
// (GPUs: matmul_lanes.wgsl, after it), their sums added by
// subgroup shuffles: no workgroup memory and no barrier. Needs subgroups of
// at least LANES lanes (a power of two), made of consecutive local
// invocations, as drivers make them for one-dimensional workgroups: a
// row's lanes are then neighbours in one subgroup.

// Σ of `v` over the LANES threads of this thread's row, in each of them.
fn lanes_sum(v: vec4<f32>, lid: u32) -> vec4<f32> {
    var sum = v;
    for (var m = 1u; m < LANES; m *= 2u) {
        sum += subgroupShuffleXor(sum, m);
    }
    return sum;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let thread = (wg.y * groups.x + wg.x) * WG + lid;
    matmul_lanes(thread / LANES, thread % LANES, lid);
}
