// Entry point of shaders/matmul.wgsl as GPUs want it (after
// matmul_x_loads.wgsl; matmul_lanes_workgroup.wgsl or
// matmul_lanes_subgroup.wgsl give `lanes_sum`).

// Threads per row: a power of two dividing WG.
override LANES: u32 = 8u;
// Tokens per workgroup (a multiple of 4): a prompt's tokens are split among
// workgroups (the dispatch's z) as well as its rows, so a prefill fills a
// large GPU (a 576-row matrix with 16 lanes per row is 9216 threads, a
// few per core of a big GPU); the weights are read again per chunk, from cache.
override TOKEN_CHUNK: u32 = 8u;

// The product on a GPU: LANES neighbouring threads share each row (with
// RPT = 2, a SwiGLU's gate row r and its up row r + f, or with ROPE_IN_QKV
// the QKV product's rows 2g and 2g + 1, a RoPE pair), taking its blocks in
// turn (k = lane, lane + LANES, ...), so even a small matrix keeps the GPU's
// many threads busy and a row's neighbouring blocks are read at once; their
// sums are then added up by `lanes_sum` (in workgroup memory, or by
// subgroup shuffles where the device has subgroups), and the first lane
// writes. Every thread reaches every `lanes_sum` (threads past
// the last row compute the last row again and write nothing).
fn matmul_lanes(group: u32, lane: u32, lid: u32, chunk: u32) {
    let stride = matmul_threads();
    let live = group < stride;
    let rows = lane_rows(min(group, stride - 1u), stride);
    // Rows past the end read the last row (in bounds) and are not written.
    let r = min(rows, vec2<u32>(shape.rows - 1u));
    let blocks = shape.cols / 32u;
    let row_vec4s = shape.cols / 4u;
    let at = array<RowAt, 2>(row_at(r.x, shape.rows, blocks), row_at(r.y, shape.rows, blocks));
    let first = chunk * TOKEN_CHUNK;
    let end = min(first + TOKEN_CHUNK, step.tokens);
    let full = first + (end - min(first, end)) / 4u * 4u;
    compute_norm_scales(first, end, lid); // (matmul_norm.wgsl: where x is normalised)
    for (var t = first; t < full; t += 4u) {
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
                let n = norm_scale(t + i - first);
                store_lanes(t + i, rows, sums[0][i] * n, sums[1][i] * n);
            }
        }
    }
    for (var t = full; t < end; t++) {
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
            let n = norm_scale(t - first);
            store_lanes(t, rows, sums.x * n, sums.y * n);
        }
    }
}

// The rows of the lane group `group` (RPT = 2: the second one's too): row
// `group`, and `group + stride`; with ROPE_IN_QKV in the QKV product, the
// pair 2 · group, 2 · group + 1.
fn lane_rows(group: u32, stride: u32) -> vec2<u32> {
    if (SPLIT && ROPE_IN_QKV) {
        return vec2<u32>(2u * group, 2u * group + 1u);
    }
    return vec2<u32>(group, group + stride);
}

// Writes matmul_lanes' values of token t: `v` of the first of `rows`; with
// SWIGLU the SwiGLU of it (the gate) and `second` (its up row's); with
// ROPE_IN_QKV in the QKV product, the pair rotated, the second row where
// there is one.
fn store_lanes(t: u32, rows: vec2<u32>, v: f32, second: f32) {
    if (SWIGLU) {
        store_swiglu(t, rows.x, v, second);
    } else if (SPLIT && ROPE_IN_QKV) {
        let pair = rope_pair(t, rows.x, vec2<f32>(v, second));
        store(t, rows.x, pair.x);
        if (rows.y < shape.rows) {
            store(t, rows.y, pair.y);
        }
    } else {
        store(t, rows.x, v);
    }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    // (WG is a multiple of LANES: a row's threads are in one workgroup.)
    prepare_x(lid); // (matmul_x_attention.wgsl: x added up from the attention's runs)
    let thread = (wg.y * groups.x + wg.x) * WG + lid;
    matmul_lanes(thread / LANES, thread % LANES, lid, wg.z);
}
