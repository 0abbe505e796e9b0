// Entry point of shaders/matmul.wgsl where each thread loads x itself.

fn block_dot_rows4_x(at: Rows4At, k: u32, x0: u32, lane: u32) -> vec4<f32> {
    return block_dot_rows4(at, k, x0);
}

fn block_dot_rows4_tokens4_x(at: Rows4At, k: u32, x0: u32, x1: u32, x2: u32, x3: u32, lane: u32) -> mat4x4<f32> {
    return block_dot_rows4_tokens4(at, k, x0, x1, x2, x3);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let thread = (wg.y * groups.x + wg.x) * WG + lid;
    if (thread >= matmul_threads()) {
        return;
    }
    matmul(thread, 0u);
}
