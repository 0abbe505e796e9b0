//! Buffer helpers: upload typed slices, make scratch buffers, read back.

use super::GpuContext;
use crate::error::{HearthError, Result};
use wgpu::util::DeviceExt;

const STORAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

/// A storage buffer initialised from `data` (readable, writable, copyable).
pub fn storage_from<T: bytemuck::Pod>(ctx: &GpuContext, label: &str, data: &[T]) -> wgpu::Buffer {
    ctx.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some(label),
        contents: non_empty(bytemuck::cast_slice(data)),
        usage: STORAGE,
    })
}

/// A zero-filled storage buffer of `len` 4-byte values.
pub fn storage_zeroed(ctx: &GpuContext, label: &str, len: usize) -> Result<wgpu::Buffer> {
    let size = (len.max(1) * 4) as u64;
    if size > ctx.report.max_storage_buffer_binding_size {
        return Err(HearthError::Gpu(format!(
            "{label} needs {size} bytes; this GPU binds at most {} per buffer",
            ctx.report.max_storage_buffer_binding_size
        )));
    }
    Ok(ctx.device.create_buffer(&wgpu::BufferDescriptor { label: Some(label), size, usage: STORAGE, mapped_at_creation: false }))
}

/// A uniform buffer holding one `T`, writable later.
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

/// A buffer the CPU can map to read results, `len` values of `T`.
pub fn staging<T>(ctx: &GpuContext, label: &str, len: usize) -> wgpu::Buffer {
    ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: (len.max(1) * std::mem::size_of::<T>()) as u64,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

/// Submits `encoder` after copying the first `len` values of `src` into a
/// new staging buffer, and returns them once the GPU is done.
pub async fn submit_and_read<T: bytemuck::Pod>(
    ctx: &GpuContext,
    encoder: wgpu::CommandEncoder,
    src: &wgpu::Buffer,
    len: usize,
) -> Result<Vec<T>> {
    submit_and_read_via(ctx, encoder, src, &staging::<T>(ctx, "read-back", len), len).await
}

/// As [`submit_and_read`], through a staging buffer made once by the caller
/// (at least `len` values long), so a decode step allocates nothing.
pub async fn submit_and_read_via<T: bytemuck::Pod>(
    ctx: &GpuContext,
    mut encoder: wgpu::CommandEncoder,
    src: &wgpu::Buffer,
    staging: &wgpu::Buffer,
    len: usize,
) -> Result<Vec<T>> {
    ctx.take_error()?; // a lost device fails at once, before anything is queued
    let size = (len * std::mem::size_of::<T>()) as u64;
    if size == 0 {
        ctx.queue.submit([encoder.finish()]);
        return Ok(Vec::new());
    }
    encoder.copy_buffer_to_buffer(src, 0, staging, 0, size);
    ctx.queue.submit([encoder.finish()]);

    let slice = staging.slice(..size);
    let (tx, rx) = futures_channel::oneshot::channel();
    slice.map_async(wgpu::MapMode::Read, move |result| {
        let _ = tx.send(result);
    });
    #[cfg(not(target_arch = "wasm32"))]
    if let Err(e) = ctx.device.poll(wgpu::PollType::wait_indefinitely()) {
        return Err(ctx.failure(HearthError::Gpu(e.to_string())).await);
    }
    let mapped = match rx.await {
        Ok(result) => result.map_err(|e| HearthError::ReadBack(e.to_string())),
        Err(_) => Err(HearthError::ReadBack("the GPU dropped the read-back request".into())),
    };
    if let Err(e) = mapped {
        staging.unmap(); // forget the failed mapping, or the next map_async would panic
        return Err(ctx.failure(e).await);
    }
    let values = bytemuck::cast_slice::<u8, T>(&slice.get_mapped_range()).to_vec();
    staging.unmap();
    ctx.take_error()?; // what was read may come from commands the GPU rejected
    Ok(values)
}
