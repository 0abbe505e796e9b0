// Residual add, in place: x[i] += y[i].
//
// Bindings (group 0):
//   0 shape    uniform { width }
//   1 step     uniform Step (tokens)
//   2 x        tokens × width f32 (read and written)
//   3 y        tokens × width f32
// Dispatch: ceil(tokens * width / WG) workgroups (2D-folded).

struct Shape {
    width: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> shape: Shape;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;
@group(0) @binding(3) var<storage, read> y: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wg.y * groups.x + wg.x) * WG + lid;
    if (i >= step.tokens * shape.width) {
        return;
    }
    x[i] += y[i];
}
