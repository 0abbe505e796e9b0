//! Buffer helpers: upload typed slices, read results back.

use super::GpuContext;
use crate::error::{HearthError, Result};
use wgpu::util::DeviceExt;

/// A storage buffer initialised from `data`, readable and writable by kernels
/// and copyable (for read-back).
pub fn storage_from<T: bytemuck::Pod>(ctx: &GpuContext, label: &str, data: &[T]) -> wgpu::Buffer {
    ctx.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some(label),
        contents: non_empty(bytemuck::cast_slice(data)),
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
    })
}

/// A uniform buffer holding one `T`.
pub fn uniform_from<T: bytemuck::Pod>(ctx: &GpuContext, label: &str, value: &T) -> wgpu::Buffer {
    ctx.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some(label),
        contents: bytemuck::bytes_of(value),
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
    })
}

/// WebGPU rejects zero-sized bindings; an empty input still gets 4 bytes.
fn non_empty(bytes: &[u8]) -> &[u8] {
    if bytes.is_empty() {
        &[0; 4]
    } else {
        bytes
    }
}

/// Copies the first `len` f32 values of `src` to the CPU.
pub async fn read_f32(ctx: &GpuContext, src: &wgpu::Buffer, len: usize) -> Result<Vec<f32>> {
    let size = (len * 4) as u64;
    if size == 0 {
        return Ok(Vec::new());
    }
    let staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("read-back"),
        size,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    encoder.copy_buffer_to_buffer(src, 0, &staging, 0, size);
    ctx.queue.submit([encoder.finish()]);

    let slice = staging.slice(..);
    let (tx, rx) = futures_channel::oneshot::channel();
    slice.map_async(wgpu::MapMode::Read, move |result| {
        let _ = tx.send(result);
    });
    #[cfg(not(target_arch = "wasm32"))]
    ctx.device
        .poll(wgpu::PollType::wait_indefinitely())
        .map_err(|e| HearthError::Gpu(e.to_string()))?;
    rx.await
        .map_err(|_| HearthError::ReadBack("the GPU dropped the read-back request".into()))?
        .map_err(|e| HearthError::ReadBack(e.to_string()))?;
    let values = bytemuck::cast_slice::<u8, f32>(&slice.get_mapped_range()).to_vec();
    staging.unmap();
    Ok(values)
}
