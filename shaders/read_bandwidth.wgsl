// Streaming-read probe: how fast this device reads a large buffer, the
// ceiling for a memory-bound decode step (the benchmark's roofline).
// Each thread reads vec4<u32>s in a grid-stride loop (neighbouring threads
// read neighbouring 16-byte words: coalesced) and XOR-folds them, so the
// reads cannot be optimised away; one u32 per thread is written.
//
// Bindings (group 0):
//   0 shape    uniform { vec4s in data, total threads }
//   1 step     uniform Step (tokens 0 skips the read; every kernel binds it)
//   2 data     the buffer to read, as vec4<u32>
//   3 out      one u32 per thread
// Dispatch: threads / WG workgroups (2D-folded).

struct Shape {
    len: u32,
    threads: u32,
    _pad0: u32,
    _pad1: u32,
}

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
    for (var i = t; i < shape.len; i += shape.threads) {
        acc ^= data[i];
    }
    out[t] = acc.x ^ acc.y ^ acc.z ^ acc.w;
}
