// Entry point of shaders/matmul.wgsl as GPUs want it (after
// matmul_x_loads.wgsl; matmul_lanes_workgroup.wgsl or
// matmul_lanes_subgroup.wgsl give `lanes_sum`).

// Threads per row: a power of two dividing WG.
override LANES: u32 = 8u;

// The product on a GPU: LANES neighbouring threads share each row (with
// RPT = 2, a SwiGLU's gate row r and its up row r + f), taking its blocks in
// turn (k = lane, lane + LANES, ...), so even a small matrix keeps the GPU's
// many threads busy and a row's neighbouring blocks are read at once; their
// sums are then added up by `lanes_sum` (in workgroup memory, or by
// subgroup shuffles where the device has subgroups), and the first lane
// writes. Every thread reaches every `lanes_sum` (threads past
// the last row compute the last row again and write nothing).
fn matmul_lanes(group: u32, lane: u32, lid: u32) {
    let stride = matmul_threads();
    let live = group < stride;
    let first = min(group, stride - 1u);
    let second = min(first + stride, shape.rows - 1u); // RPT = 2 only
    let blocks = shape.cols / 32u;
    let row_vec4s = shape.cols / 4u;
    let at = array<RowAt, 2>(row_at(first, shape.rows, blocks), row_at(second, shape.rows, blocks));
    let full = step.tokens / 4u * 4u;
    for (var t = 0u; t < full; t += 4u) {
        var acc = array<vec4<f32>, 2>();
        for (var k = lane; k < blocks; k += LANES) {
            let o = t * row_vec4s + 8u * k;
            for (var j = 0u; j < RPT; j++) {
                acc[j] += block_dot4(at[j], k, o, o + row_vec4s, o + 2u * row_vec4s, o + 3u * row_vec4s);
            }
        }
        let sums = array<vec4<f32>, 2>(lanes_sum(acc[0], lid), select(vec4<f32>(0.0), lanes_sum(acc[1], lid), RPT == 2u));
        if (live && lane == 0u) {
            for (var i = 0u; i < 4u; i++) {
                store_lanes(t + i, first, sums[0][i], sums[1][i]);
            }
        }
    }
    for (var t = full; t < step.tokens; t++) {
        var acc = vec2<f32>(0.0);
        for (var k = lane; k < blocks; k += LANES) {
            let o = t * row_vec4s + 8u * k;
            acc.x += block_dot(at[0], k, o);
            if (RPT == 2u) {
                acc.y += block_dot(at[1], k, o);
            }
        }
        // (Two rows' sums in one vec4: one reduction for both.)
        let sums = lanes_sum(vec4<f32>(acc, 0.0, 0.0), lid);
        if (live && lane == 0u) {
            store_lanes(t, first, sums.x, sums.y);
        }
    }
}

// Writes matmul_lanes' row `row` of token t (`v`), or with SWIGLU the
// SwiGLU of it (the gate) and `up` (its up row's).
fn store_lanes(t: u32, row: u32, v: f32, up: f32) {
    if (SWIGLU) {
        store_swiglu(t, row, v, up);
    } else {
        store(t, row, v);
    }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    // (WG is a multiple of LANES: a row's threads are in one workgroup.)
    let thread = (wg.y * groups.x + wg.x) * WG + lid;
    matmul_lanes(thread / LANES, thread % LANES, lid);
}
