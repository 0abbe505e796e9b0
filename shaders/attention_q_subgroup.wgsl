// Entry point of shaders/attention_split_keys.wgsl with the query shared in
// the subgroup: for each eight vec4s of it, the first eight lanes load one
// each and subgroupBroadcast hands them to all. Picked where the matmul
// shares x the same way (llvmpipe: see matmul_x_subgroup.wgsl), where a
// read of workgroup memory is a loop over the lanes like a storage load.
// Needs subgroups of at least 8 lanes.

fn load_q(q_off: u32, lid: u32) {}

// The query (at vec4 q_off) dotted with the key at vec4 `row`.
fn q_dot_key(q_off: u32, row: u32, lane: u32) -> f32 {
    var dot4 = vec4<f32>(0.0);
    let hd4 = shape.head_dim / 4u;
    let broadcast = hd4 / 8u * 8u;
    for (var d = 0u; d < broadcast; d += 8u) {
        let v = q[q_off + d + lane % 8u];
        // (subgroupBroadcast takes constant lanes only.)
        dot4 += subgroupBroadcast(v, 0u) * key(row + d) + subgroupBroadcast(v, 1u) * key(row + d + 1u)
              + subgroupBroadcast(v, 2u) * key(row + d + 2u) + subgroupBroadcast(v, 3u) * key(row + d + 3u)
              + subgroupBroadcast(v, 4u) * key(row + d + 4u) + subgroupBroadcast(v, 5u) * key(row + d + 5u)
              + subgroupBroadcast(v, 6u) * key(row + d + 6u) + subgroupBroadcast(v, 7u) * key(row + d + 7u);
    }
    for (var d = broadcast; d < hd4; d++) {
        dot4 += q[q_off + d] * key(row + d);
    }
    return dot(dot4, vec4<f32>(1.0));
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32,
        @builtin(subgroup_invocation_id) lane: u32) {
    attend(wg.x, wg.y, lid, lane);
}
