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
    encoder: wgpu::CommandEncoder,
    src: &wgpu::Buffer,
    staging: &wgpu::Buffer,
    len: usize,
) -> Result<Vec<T>> {
    ctx.take_error()?; // a lost device fails at once, before anything is queued
    let submission = submit_with_copy::<T>(ctx, encoder, src, staging, len);
    read_staging(ctx, staging, len, submission).await
}

/// Submits `encoder` after copying the first `len` values of `src` into
/// `staging`, without waiting: [`read_staging`] reads them once that
/// submission (returned; none where there is nothing to copy) is done.
pub fn submit_with_copy<T: bytemuck::Pod>(ctx: &GpuContext, mut encoder: wgpu::CommandEncoder, src: &wgpu::Buffer, staging: &wgpu::Buffer, len: usize) -> Option<wgpu::SubmissionIndex> {
    let size = (len * std::mem::size_of::<T>()) as u64;
    if size == 0 {
        ctx.queue.submit([encoder.finish()]);
        return None;
    }
    encoder.copy_buffer_to_buffer(src, 0, staging, 0, size);
    Some(ctx.queue.submit([encoder.finish()]))
}

/// The first `len` values of `staging` once `submission` (which copied
/// them there: [`submit_with_copy`]) is done, waiting for nothing later
/// (natively; in the browser the mapping resolves when the buffer is ready).
pub async fn read_staging<T: bytemuck::Pod>(ctx: &GpuContext, staging: &wgpu::Buffer, len: usize, submission: Option<wgpu::SubmissionIndex>) -> Result<Vec<T>> {
    let Some(submission) = submission else { return Ok(Vec::new()) };
    let size = (len * std::mem::size_of::<T>()) as u64;
    let slice = staging.slice(..size);
    let (tx, rx) = futures_channel::oneshot::channel();
    slice.map_async(wgpu::MapMode::Read, move |result| {
        let _ = tx.send(result);
    });
    #[cfg(not(target_arch = "wasm32"))]
    if let Err(e) = ctx.device.poll(wgpu::PollType::Wait { submission_index: Some(submission), timeout: None }) {
        // (A submission to a lost device fails, and waiting for it fails
        // before the device's lost callback has run: let it run first.)
        let _ = ctx.device.poll(wgpu::PollType::Poll);
        return Err(ctx.failure(HearthError::Gpu(e.to_string())).await);
    }
    #[cfg(target_arch = "wasm32")]
    let _ = submission;
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
