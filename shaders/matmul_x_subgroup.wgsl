// Entry point of shaders/matmul.wgsl where the first eight lanes of each
// subgroup (of 8 or more) load one vec4 of x's block each and share them by
// subgroupBroadcast. Picked for llvmpipe (lavapipe), where a storage load
// is a loop over the lanes, one per vec4 of every thread even when all of
// them read the same address, while a broadcast is a register extract: one
// loop instead of eight per block. (SwiftShader loads one address for all
// lanes at once but emulates the broadcast, so there it would be slower.)
// Needs the adapter's subgroups (native wgpu: Features::SUBGROUP).

// block_dot_rows4 with x's block shared in the subgroup.
fn block_dot_rows4_x(at: Rows4At, k: u32, x0: u32, lane: u32) -> vec4<f32> {
    let v = x[x0 + lane % 8u];
    // (subgroupBroadcast takes constant lanes only.)
    let xs = array<vec4<f32>, 8>(subgroupBroadcast(v, 0u), subgroupBroadcast(v, 1u), subgroupBroadcast(v, 2u), subgroupBroadcast(v, 3u),
                                 subgroupBroadcast(v, 4u), subgroupBroadcast(v, 5u), subgroupBroadcast(v, 6u), subgroupBroadcast(v, 7u));
    var qx = vec4<f32>(0.0);
    var sx = vec4<f32>(0.0);
    if (QTYPE == T_Q4_0 || QTYPE == T_Q4_1) {
        // Both nibbles of each word at once, as block_dot_rows4 does (a loop
        // over the eight parts is three times slower here).
        let q = qvecs4(at, k, 0u);
        for (var w = 0u; w < 4u; w++) {
            sx += xs[w] + xs[4u + w];
            qx += rows4_nibbles_dot(q, w, xs[w], xs[4u + w]);
        }
        return scaled_rows4(at, k, qx, sx);
    }
    for (var g = 0u; g < qs_vec4s(); g++) {
        let q = qvecs4(at, k, g);
        for (var j = 0u; j < parts(); j++) {
            let xv = xs[g * parts() + j];
            sx += xv;
            qx += rows4_part_dot(q, j, xv);
        }
    }
    return scaled_rows4(at, k, qx, sx);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) lane: u32) {
    let thread = (wg.y * groups.x + wg.x) * WG + lid;
    // Only whole subgroups past the last row leave: the others need every lane.
    if (subgroupAll(thread >= matmul_threads())) {
        return;
    }
    matmul(thread, lane);
}
