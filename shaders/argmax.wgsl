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

@group(0) @binding(0) var<uniform> shape: Shape;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;

var<workgroup> best_value: array<f32, WG>;
var<workgroup> best_index: array<u32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32) {
    var value = -3.4e38;
    var index = 0xffffffffu;
    for (var i = lid; i < shape.n; i += WG) {
        if (logits[i] > value) { // strided ascending: the first maximum wins
            value = logits[i];
            index = i;
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
