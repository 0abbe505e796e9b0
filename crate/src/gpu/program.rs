//! Dispatches made once at load and recorded many times.
//!
//! A `Dispatch` owns its pipeline and bind group (whose buffers, shape
//! uniform included, are fixed at load); only the shared `Step` uniform
//! changes between forwards, written once before each submit.

use super::{grid_2d, GpuContext};
use crate::error::{HearthError, Result};
use std::sync::Arc;

/// The per-forward uniform every kernel binds at slot 1 (shaders/step.wgsl).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Step {
    /// Rows processed by this forward.
    pub tokens: u32,
    /// Sequence position of the first of them.
    pub pos0: u32,
    /// First row read from row-indexed inputs.
    pub row0: u32,
    pub _pad: u32,
}

/// Threads per workgroup of the elementwise kernels (their WGSL default).
pub const WG: u32 = 64;

/// Queries per workgroup of a prompt's attention in tiles
/// (shaders/attention_cpu_tiles.wgsl `TILE`).
pub const ATTENTION_TILE: u32 = 8;

/// How many workgroups a dispatch needs for a given number of tokens.
#[derive(Debug, Clone, Copy)]
pub enum Grid {
    /// One thread per item, `per_token` items per token.
    Threads { per_token: u32 },
    /// One workgroup per token.
    PerToken,
    /// `threads` threads (shaders/matmul.wgsl: one per RPT output rows, or
    /// LANES per RPT rows), for all the tokens, or that many again for each
    /// `token_chunk` tokens (the dispatch's z; matmul_lanes.wgsl); none in
    /// forwards of a number of tokens that `tokens` leaves out.
    Rows { threads: u32, token_chunk: Option<u32>, tokens: Tokens },
    /// One workgroup per (head, token) (shaders/attention.wgsl), and for a
    /// single token `runs` per head (its keys split into runs); none in
    /// forwards of a number of tokens that `tokens` leaves out.
    Attention { heads: u32, runs: u32, tokens: Tokens },
    /// One workgroup per head and `TILE` tokens, for two tokens or more
    /// (nothing for one): shaders/attention_cpu_tiles.wgsl.
    AttentionTiles { heads: u32 },
    /// One workgroup per head, for a single token only (nothing for more):
    /// shaders/attention_combine.wgsl.
    OneTokenHeads { heads: u32 },
    /// A single workgroup.
    Single,
}

impl Grid {
    pub fn groups(self, tokens: u32) -> [u32; 3] {
        match self {
            Grid::Threads { per_token } => {
                let (x, y) = grid_2d((tokens * per_token).div_ceil(WG));
                [x, y, 1]
            }
            Grid::PerToken => {
                let (x, y) = grid_2d(tokens);
                [x, y, 1]
            }
            Grid::Rows { tokens: only, .. } if !only.includes(tokens) => [0, 0, 0],
            Grid::Rows { threads, token_chunk, .. } => {
                let (x, y) = grid_2d(threads.div_ceil(WG));
                [x, y, token_chunk.map_or(1, |c| tokens.div_ceil(c))]
            }
            Grid::Attention { tokens: only, .. } if !only.includes(tokens) => [0, 0, 0],
            Grid::Attention { heads, runs, .. } => [heads, tokens, if tokens == 1 { runs } else { 1 }],
            Grid::AttentionTiles { heads } => [if tokens > 1 { heads } else { 0 }, tokens.div_ceil(ATTENTION_TILE), 1],
            Grid::OneTokenHeads { heads } => [if tokens == 1 { heads } else { 0 }, 1, 1],
            Grid::Single => [1, 1, 1],
        }
    }
}

/// Which forwards a dispatch has work in, by their number of tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tokens {
    Any,
    /// A decode step's.
    One,
    /// A prompt chunk's of two tokens or more.
    Several,
}

impl Tokens {
    pub fn includes(self, tokens: u32) -> bool {
        match self {
            Tokens::Any => true,
            Tokens::One => tokens == 1,
            Tokens::Several => tokens > 1,
        }
    }
}

/// One kernel launch with everything bound.
pub struct Dispatch {
    pub pipeline: Arc<wgpu::ComputePipeline>,
    pub bind_group: wgpu::BindGroup,
    pub grid: Grid,
    /// What it runs, for profiles (`gpu::ops` names its kernel; empty otherwise).
    pub label: String,
}

impl Dispatch {
    /// Binds `buffers` to slots 0, 1, 2, ... of the pipeline's group 0.
    pub fn new(ctx: &GpuContext, pipeline: Arc<wgpu::ComputePipeline>, buffers: &[&wgpu::Buffer], grid: Grid) -> Self {
        let layout = pipeline.get_bind_group_layout(0);
        let entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry { binding: i as u32, resource: b.as_entire_binding() })
            .collect();
        let bind_group = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor { label: None, layout: &layout, entries: &entries });
        Dispatch { pipeline, bind_group, grid, label: String::new() }
    }

    /// Whether it has any workgroups in a forward of `tokens` tokens.
    pub fn has_work(&self, tokens: u32) -> bool {
        self.grid.groups(tokens).iter().all(|&n| n > 0)
    }

    /// This product (a `Grid::Rows` dispatch) in the forwards `tokens` includes only.
    pub fn only(self, tokens: Tokens) -> Self {
        match self.grid {
            Grid::Rows { threads, token_chunk, .. } => Dispatch { grid: Grid::Rows { threads, token_chunk, tokens }, ..self },
            _ => {
                debug_assert!(false, "only products are left out of some forwards");
                self
            }
        }
    }
}

/// Records `dispatches` in order into one compute pass, for `tokens` tokens.
pub fn encode<'a>(encoder: &mut wgpu::CommandEncoder, dispatches: impl IntoIterator<Item = &'a Dispatch>, tokens: u32) {
    encode_with_timestamps(encoder, dispatches, tokens, None);
}

/// As [`encode`], and where `timestamps` is given (a query set and a first
/// query index q; the device needs `Features::TIMESTAMP_QUERY_INSIDE_PASSES`)
/// writes a timestamp at q before the first dispatch and at q + i + 1
/// after dispatch i (also after one that has nothing to do for `tokens`,
/// so the indices stay those of `dispatches`).
pub fn encode_with_timestamps<'a>(
    encoder: &mut wgpu::CommandEncoder,
    dispatches: impl IntoIterator<Item = &'a Dispatch>,
    tokens: u32,
    timestamps: Option<(&wgpu::QuerySet, u32)>,
) {
    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("forward"), timestamp_writes: None });
    if let Some((set, q)) = timestamps {
        pass.write_timestamp(set, q);
    }
    for (i, d) in dispatches.into_iter().enumerate() {
        let [x, y, z] = d.grid.groups(tokens);
        if x * y * z > 0 {
            pass.set_pipeline(&d.pipeline);
            pass.set_bind_group(0, &d.bind_group, &[]);
            pass.dispatch_workgroups(x, y, z);
        }
        if let Some((set, q)) = timestamps {
            pass.write_timestamp(set, q + i as u32 + 1);
        }
    }
}

/// Each of `dispatches`' GPU time in microseconds inside one pass of them
/// all (for `tokens` tokens), from timestamps written between them (the
/// device needs `GpuContext::has_timestamps_in_passes`): the median over up
/// to `repeats` passes, each dispatch's from the end of the one before (its
/// wait behind the barrier included).
pub async fn gpu_times_in_pass(ctx: &GpuContext, dispatches: &[&Dispatch], tokens: u32, repeats: usize) -> Result<Vec<f64>> {
    let per_pass = dispatches.len() as u32 + 1;
    if per_pass > wgpu::QUERY_SET_MAX_QUERIES {
        return Err(HearthError::InvalidArgument(format!("{} dispatches are more than one query set can time", dispatches.len())));
    }
    let passes = (repeats as u32).clamp(1, wgpu::QUERY_SET_MAX_QUERIES / per_pass);
    let queries = passes * per_pass;
    let set = ctx.device.create_query_set(&wgpu::QuerySetDescriptor { label: Some("profile"), ty: wgpu::QueryType::Timestamp, count: queries });
    let resolved = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("profile.timestamps"),
        size: u64::from(queries) * 8,
        usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    for p in 0..passes {
        encode_with_timestamps(&mut encoder, dispatches.iter().copied(), tokens, Some((&set, p * per_pass)));
    }
    encoder.resolve_query_set(&set, 0..queries, &resolved, 0);
    let ticks: Vec<u64> = super::submit_and_read(ctx, encoder, &resolved, queries as usize).await?;
    let us_per_tick = f64::from(ctx.queue.get_timestamp_period()) / 1e3;
    let per_pass = per_pass as usize;
    let pass_time = |i: usize, p: usize| ticks[p * per_pass + i + 1].wrapping_sub(ticks[p * per_pass + i]) as f64 * us_per_tick;
    Ok((0..dispatches.len()).map(|i| crate::bench::median((0..passes as usize).map(|p| pass_time(i, p)).collect())).collect())
}
