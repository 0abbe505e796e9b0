// Index of the largest logit (the lowest index on ties): greedy sampling
// on the GPU, so only 4 bytes are read back per token.
//
// Bindings (group 0):
//   0 shape    uniform { n }
//   1 logits   n f32
//   2 out      1 u32
// Dispatch: one workgroup.

struct Shape {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

const WG: u32 = 256u;
const RUN: u32 = 8u;

@group(0) @binding(0) var<uniform> shape: Shape;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;

var<workgroup> best_value: array<f32, WG>;
var<workgroup> best_index: array<u32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32) {
    var value = -3.4e38;
    var index = 0xffffffffu;
    // Runs of RUN neighbouring logits per thread, the run's loads issued
    // together (clamped in bounds; those past n never win), then compared
    // in ascending order, so a thread has RUN loads in flight rather than
    // one. (Walking one logit at a time, the kernel took 52 µs of an H200's
    // decode step for 49 152 logits, as long as a layer's four products.)
    for (var base = RUN * lid; base < shape.n; base += RUN * WG) {
        var run: array<f32, RUN>;
        for (var j = 0u; j < RUN; j++) {
            run[j] = logits[min(base + j, shape.n - 1u)];
        }
        for (var j = 0u; j < RUN; j++) {
            if (base + j < shape.n && run[j] > value) { // ascending: the first maximum wins
                value = run[j];
                index = base + j;
            }
        }
    }
    best_value[lid] = value;
    best_index[lid] = index;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) {
            let v = best_value[lid + stride];
            let j = best_index[lid + stride];
            if (v > best_value[lid] || (v == best_value[lid] && j < best_index[lid])) {
                best_value[lid] = v;
                best_index[lid] = j;
            }
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        out[0] = best_index[0];
    }
}
