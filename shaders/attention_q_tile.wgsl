// Entry point of shaders/attention_split_keys.wgsl with the query in
// workgroup memory, read by every thread.

var<workgroup> q_tile: array<vec4<f32>, MAX_HD4>;

fn load_q(q_off: u32, lid: u32) {
    for (var d = lid; d < shape.head_dim / 4u; d += WG) {
        q_tile[d] = q[q_off + d];
    }
    workgroupBarrier();
}

// The query (at vec4 q_off) dotted with the key at vec4 `row`.
fn q_dot_key(q_off: u32, row: u32, lane: u32) -> f32 {
    var dot4 = vec4<f32>(0.0);
    for (var d = 0u; d < shape.head_dim / 4u; d++) {
        dot4 += q_tile[d] * key(row + d);
    }
    return dot(dot4, vec4<f32>(1.0));
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    attend(wg.x, wg.y, lid, 0u);
}
