//! Everything that touches the GPU: the device context, the WGSL kernel table,
//! weights in their quantized form, the dispatches the model records, and the
//! kernel self-check against the CPU oracle (`selfcheck`, native and in wasm).

mod buffers;
mod context;
mod kernels;
pub mod model;
pub mod ops;
pub mod program;
pub mod selfcheck;
pub mod weights;

pub use buffers::{read_staging, staging, storage_from, storage_zeroed, submit_and_read, submit_and_read_via, submit_with_copy, uniform_from};
pub use context::{AdapterReport, GpuContext};
pub use kernels::{Kernel, Pipelines, Variants};
pub use program::{Dispatch, Step};

use crate::error::{HearthError, Result};

/// Largest workgroup count along one dispatch dimension that every WebGPU
/// adapter accepts (`maxComputeWorkgroupsPerDimension` default).
pub const MAX_GROUPS_PER_DIM: u32 = 65_535;

/// Splits `n` workgroups into an (x, y) grid that respects
/// [`MAX_GROUPS_PER_DIM`]; kernels recover the index as `y * num_groups.x + x`
/// and return early past `n`.
pub fn grid_2d(n: u32) -> (u32, u32) {
    if n <= MAX_GROUPS_PER_DIM {
        (n, 1)
    } else {
        (MAX_GROUPS_PER_DIM, n.div_ceil(MAX_GROUPS_PER_DIM))
    }
}

/// RMSNorm of `x` (rows × w.len()) on the GPU, as a one-shot: uploads,
/// dispatches, reads back. For tests and the browser self-check.
pub async fn rms_norm(ctx: &GpuContext, x: &[f32], w: &[f32], eps: f32) -> Result<Vec<f32>> {
    let cols = w.len();
    if cols == 0 || !x.len().is_multiple_of(cols) {
        return Err(HearthError::InvalidArgument(format!(
            "rms_norm: x has {} values, not whole rows of {cols}",
            x.len()
        )));
    }
    let rows = (x.len() / cols) as u32;
    let step = uniform_from(ctx, "step", &Step { tokens: rows, ..Default::default() });
    let (x_buf, w_buf) = (storage_from(ctx, "x", x), storage_from(ctx, "w", w));
    let out = storage_zeroed(ctx, "out", x.len())?;
    let dispatch = ops::rms_norm(ctx, &step, &x_buf, None, &w_buf, &out, cols, eps);
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    program::encode(&mut encoder, std::slice::from_ref(&dispatch), rows);
    submit_and_read(ctx, encoder, &out, x.len()).await
}
