// Part of shaders/matmul.wgsl where the RMSNorm and the residual add are
// dispatches of their own (CPU-based adapters, where a matmul thread
// computing a token's norm would cost as much as the dispatch it saves).

const NORM_FUSED: bool = false;

fn gain4(i: u32) -> vec4<f32> {
    return vec4<f32>(1.0);
}

fn compute_norm_scales(first: u32, end: u32, lid: u32) {}

fn norm_scale(i: u32) -> f32 {
    return 1.0;
}
