//! Launcher for `shaders/rms_norm.wgsl`.

use super::{grid_2d, read_f32, storage_from, uniform_from, GpuContext, Kernel};
use crate::error::{HearthError, Result};

/// The kernel's uniform block (see the WGSL header).
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct RmsNormParams {
    pub rows: u32,
    pub cols: u32,
    pub eps: f32,
    pub _pad: u32,
}

/// Records one RMSNorm dispatch over `rows` rows into `pass`.
pub fn encode_rms_norm(pass: &mut wgpu::ComputePass<'_>, ctx: &GpuContext, bind_group: &wgpu::BindGroup, rows: u32) {
    let (gx, gy) = grid_2d(rows);
    pass.set_pipeline(ctx.pipelines.get(Kernel::RmsNorm));
    pass.set_bind_group(0, bind_group, &[]);
    pass.dispatch_workgroups(gx, gy, 1);
}

/// Uploads `x` (rows × w.len()) and `w`, runs the kernel, reads the result.
/// A one-shot helper for tests and the browser self-check; the model records
/// the same dispatch into its own command encoder with buffers made at load.
pub async fn rms_norm(ctx: &GpuContext, x: &[f32], w: &[f32], eps: f32) -> Result<Vec<f32>> {
    let cols = w.len();
    if cols == 0 || x.len() % cols != 0 {
        return Err(HearthError::InvalidArgument(format!(
            "rms_norm: x has {} values, not whole rows of {cols}",
            x.len()
        )));
    }
    let rows = (x.len() / cols) as u32;
    let params = RmsNormParams { rows, cols: cols as u32, eps, _pad: 0 };
    let params = uniform_from(ctx, "rms_norm.params", &params);
    let x_buf = storage_from(ctx, "rms_norm.x", x);
    let w_buf = storage_from(ctx, "rms_norm.w", w);
    let out = storage_from(ctx, "rms_norm.out", &vec![0f32; x.len()]);

    let layout = ctx.pipelines.get(Kernel::RmsNorm).get_bind_group_layout(0);
    let bind_group = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("rms_norm"),
        layout: &layout,
        entries: &[
            wgpu::BindGroupEntry { binding: 0, resource: params.as_entire_binding() },
            wgpu::BindGroupEntry { binding: 1, resource: x_buf.as_entire_binding() },
            wgpu::BindGroupEntry { binding: 2, resource: w_buf.as_entire_binding() },
            wgpu::BindGroupEntry { binding: 3, resource: out.as_entire_binding() },
        ],
    });
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        encode_rms_norm(&mut pass, ctx, &bind_group, rows);
    }
    ctx.queue.submit([encoder.finish()]);
    read_f32(ctx, &out, x.len()).await
}
