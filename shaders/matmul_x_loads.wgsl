// Helpers of shaders/matmul.wgsl where each thread loads x itself (then
// comes matmul_threads.wgsl, or matmul_lanes.wgsl and its entry point).

fn block_dot_rows4_x(at: Rows4At, k: u32, x0: u32, lane: u32) -> vec4<f32> {
    return block_dot_rows4(at, k, x0);
}

fn block_dot_rows4_tokens4_x(at: Rows4At, k: u32, x0: u32, x1: u32, x2: u32, x3: u32, lane: u32) -> mat4x4<f32> {
    return block_dot_rows4_tokens4(at, k, x0, x1, x2, x3);
}
