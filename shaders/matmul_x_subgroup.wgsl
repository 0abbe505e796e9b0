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
        // Both nibbles of each word at once, as block_dot_rows4 does (one
        // nibble vec4 at a time, eight per block, was three times slower).
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

// block_dot_rows4_tokens4 with the four tokens' x blocks shared in the
// subgroup: four load loops per block instead of 32, prefill twice as fast.
// Written out for Q4 types (a loop over arrays of the broadcasts was three
// times slower than the loads); the others load x themselves.
fn block_dot_rows4_tokens4_x(at: Rows4At, k: u32, x0: u32, x1: u32, x2: u32, x3: u32, lane: u32) -> mat4x4<f32> {
    if (QTYPE != T_Q4_0 && QTYPE != T_Q4_1) {
        return block_dot_rows4_tokens4(at, k, x0, x1, x2, x3);
    }
    let i = lane % 8u;
    let v0 = x[x0 + i];
    let v1 = x[x1 + i];
    let v2 = x[x2 + i];
    let v3 = x[x3 + i];
    let q = qvecs4(at, k, 0u);
    let l0 = mat4x4<f32>(subgroupBroadcast(v0, 0u), subgroupBroadcast(v1, 0u), subgroupBroadcast(v2, 0u), subgroupBroadcast(v3, 0u));
    let h0 = mat4x4<f32>(subgroupBroadcast(v0, 4u), subgroupBroadcast(v1, 4u), subgroupBroadcast(v2, 4u), subgroupBroadcast(v3, 4u));
    let l1 = mat4x4<f32>(subgroupBroadcast(v0, 1u), subgroupBroadcast(v1, 1u), subgroupBroadcast(v2, 1u), subgroupBroadcast(v3, 1u));
    let h1 = mat4x4<f32>(subgroupBroadcast(v0, 5u), subgroupBroadcast(v1, 5u), subgroupBroadcast(v2, 5u), subgroupBroadcast(v3, 5u));
    let l2 = mat4x4<f32>(subgroupBroadcast(v0, 2u), subgroupBroadcast(v1, 2u), subgroupBroadcast(v2, 2u), subgroupBroadcast(v3, 2u));
    let h2 = mat4x4<f32>(subgroupBroadcast(v0, 6u), subgroupBroadcast(v1, 6u), subgroupBroadcast(v2, 6u), subgroupBroadcast(v3, 6u));
    let l3 = mat4x4<f32>(subgroupBroadcast(v0, 3u), subgroupBroadcast(v1, 3u), subgroupBroadcast(v2, 3u), subgroupBroadcast(v3, 3u));
    let h3 = mat4x4<f32>(subgroupBroadcast(v0, 7u), subgroupBroadcast(v1, 7u), subgroupBroadcast(v2, 7u), subgroupBroadcast(v3, 7u));
    let qx = tile_nibbles_dot(q, 0u, l0, h0) + tile_nibbles_dot(q, 1u, l1, h1) + tile_nibbles_dot(q, 2u, l2, h2) + tile_nibbles_dot(q, 3u, l3, h3);
    let sx = vec4<f32>(1.0) * (l0 + h0 + l1 + h1 + l2 + h2 + l3 + h3);
    return scaled_tile(at, k, qx, sx);
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
