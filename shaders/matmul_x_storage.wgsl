// Part of shaders/matmul.wgsl for every product but the one below: x is
// read from its binding as it is.
// (shaders/matmul_x_attention.wgsl is the other way to read it.)

fn x_at(i: u32) -> vec4<f32> {
    return x[i];
}

fn prepare_x(lid: u32) {}
