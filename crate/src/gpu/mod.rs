//! Everything that touches the GPU: the device context, the WGSL kernel table,
//! buffer helpers and one launcher per kernel.

mod buffers;
mod context;
mod kernels;
mod rms_norm;

pub use buffers::{read_f32, storage_from, uniform_from};
pub use context::{AdapterReport, GpuContext};
pub use kernels::{Kernel, Pipelines};
pub use rms_norm::{rms_norm, RmsNormParams};

/// Largest workgroup count along one dispatch dimension that every WebGPU
/// adapter accepts (`maxComputeWorkgroupsPerDimension` default).
pub const MAX_GROUPS_PER_DIM: u32 = 65_535;

/// Splits `n` workgroups into an (x, y) grid that respects
/// [`MAX_GROUPS_PER_DIM`]; kernels recover the index as `y * num_groups.x + x`
/// and return early past `n`.
pub fn grid_2d(n: u32) -> (u32, u32) {
    if n <= MAX_GROUPS_PER_DIM {
        (n.max(1), 1)
    } else {
        (MAX_GROUPS_PER_DIM, n.div_ceil(MAX_GROUPS_PER_DIM))
    }
}
