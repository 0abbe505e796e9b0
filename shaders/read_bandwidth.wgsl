// Streaming-read probe: how fast this device reads a large buffer, the
// ceiling for a memory-bound decode step (the benchmark's roofline).
// Each thread reads vec4<u32>s and XOR-folds them, so the reads cannot be
// optimised away; one u32 per thread is written. Neighbouring threads read
// neighbouring 16-byte words (coalesced), in one of two orders, as the best
// differs between devices (the benchmark takes the faster):
//   runs = 0: a grid-stride loop, thread t reads t, t + threads, ...;
//   runs = 1: the buffer is cut into one run per group of RUN_GROUP
//     neighbouring threads, which walk through their run together, as the
//     matmul's threads do through their row group (see quant.wgsl): what a
//     CPU-based adapter, which runs a few neighbouring threads at once from
//     start to end, reads fastest.
// crate/src/gpu/ops.rs `read_bandwidth_reads` lists what each thread reads.
//
// Bindings (group 0):
//   0 shape    uniform { vec4s in data, total threads, runs }
//   1 step     uniform Step (tokens 0 skips the read; every kernel binds it)
//   2 data     the buffer to read, as vec4<u32>
//   3 out      one u32 per thread
// Dispatch: threads / WG workgroups (2D-folded).

struct Shape {
    len: u32,
    threads: u32,
    runs: u32,
    _pad: u32,
}

const RUN_GROUP: u32 = 8u;

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> shape: Shape;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> data: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read_write> out: array<u32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let t = (wg.y * groups.x + wg.x) * WG + lid;
    if (t >= shape.threads || step.tokens == 0u) {
        return;
    }
    var acc = vec4<u32>(0u);
    if (shape.runs == 1u) {
        let group = t / RUN_GROUP;
        let run = (shape.len + (shape.threads + RUN_GROUP - 1u) / RUN_GROUP - 1u) / ((shape.threads + RUN_GROUP - 1u) / RUN_GROUP);
        let start = min(group * run, shape.len);
        let end = min(start + run, shape.len);
        let lanes = min(RUN_GROUP, shape.threads - group * RUN_GROUP);
        for (var i = start + t % RUN_GROUP; i < end; i += lanes) {
            acc ^= data[i];
        }
    } else {
        for (var i = t; i < shape.len; i += shape.threads) {
            acc ^= data[i];
        }
    }
    out[t] = acc.x ^ acc.y ^ acc.z ^ acc.w;
}
