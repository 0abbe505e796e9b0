// Part of shaders/matmul.wgsl where the RMSNorm and the residual add are
// dispatches of their own: on CPU-based adapters (lavapipe's profile put
// the norms' dispatches at about what the gain's loads in the products
// would cost) and with HEARTH_NORM_IN_MATMUL=0. The stubs fold away.

const NORM_FUSED: bool = false;

fn gain4(i: u32) -> vec4<f32> {
    return vec4<f32>(1.0);
}

fn compute_norm_scales(first: u32, end: u32, lid: u32) {}

fn norm_scale(i: u32) -> f32 {
    return 1.0;
}
