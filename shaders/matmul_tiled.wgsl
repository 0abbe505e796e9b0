// Entry point of shaders/matmul.wgsl for a prompt's tokens on GPUs
// (`Variants::matmul_tiled`, after matmul_x_loads.wgsl): each workgroup
// computes a tile of TILE_ROWS rows × TOKEN_CHUNK tokens, one 32-column
// block at a time. Per block, 32 of its threads decode a row's block each
// into workgroup memory and the other 32 load a token's 32 values of x
// each, once for the whole tile; then every thread multiplies 4 rows × 4
// tokens out of workgroup memory. A weight is decoded once per tile instead
// of once per thread group and 8 tokens (matmul_lanes.wgsl), and an x value
// read once per tile instead of once per row.
//
// Tile rows: rows r0 .. r0 + 31; with SWIGLU, gate rows r0 .. r0 + 15 and
// their up rows f + r0 .. (f = rows / 2), so that each thread holds a gate
// row and its up row. Thread (g, u) = (lid / 8, lid % 8) holds tile rows
// 4g .. 4g + 3 (SWIGLU: 2g, 2g + 1 and their up rows 16 + 2g, 16 + 2g + 1),
// so the QKV product's RoPE pairs (2i, 2i + 1) are one thread's, and the
// tile's tokens u, u + 8, u + 16, u + 24.
// Dispatch: one workgroup of WG = 64 threads per tile of rows (2D-folded),
// z: the prompt's tokens in chunks of TOKEN_CHUNK (32).

override TOKEN_CHUNK: u32 = 32u;

const TILE_ROWS: u32 = 32u;

// The tile's weights, decoded: row i's block as 8 vec4s (the block's values
// 4j .. 4j + 3). Rows are 9 vec4s apart (one unused) and so are tokens
// below: the eight threads that read a vec4 of workgroup memory together
// then hit eight different banks.
var<workgroup> w_tile: array<array<vec4<f32>, 9>, TILE_ROWS>;
// The tile's tokens' values of x for the same 32 columns (times the
// norm's gain where x is normalised).
var<workgroup> x_tile: array<array<vec4<f32>, 9>, 32>;
// Where x is normalised (matmul_norm.wgsl's `flags` bit 1), each of the
// tile's tokens' 1 / rms, from the sums of squares its loading thread
// gathered on the way (else 1). (matmul_norm.wgsl's own sums would take
// the workgroup past WebGPU's 16 KiB with the tiles.)
var<workgroup> tile_norms: array<f32, 32>;

// Output rows per tile (SWIGLU: gate rows; their up rows come with them).
fn tile_rows() -> u32 {
    return select(TILE_ROWS, TILE_ROWS / 2u, SWIGLU);
}

// The matrix row of tile row i for the tile starting at output row r0
// (rows past the end: the last row, read in bounds, never written).
fn tile_row(r0: u32, i: u32) -> u32 {
    if (SWIGLU) {
        let f = shape.rows / 2u;
        let r = min(r0 + i % 16u, f - 1u);
        return select(r, f + r, i >= 16u);
    }
    return min(r0 + i, shape.rows - 1u);
}

// The tile row of thread group g's row number j (0 .. 3).
fn thread_tile_row(g: u32, j: u32) -> u32 {
    if (SWIGLU) {
        return 2u * g + j % 2u + 16u * (j / 2u);
    }
    return 4u * g + j;
}

// Block k of the row at `at`, decoded: vec4 j holds its values 4j .. 4j + 3.
// (The quant words come 16 bytes at a time, as in the other products.)
fn decoded_block(at: RowAt, k: u32) -> array<vec4<f32>, 8> {
    var v: array<vec4<f32>, 8>;
    let b = at.scales + k * at.step;
    if (QTYPE == T_Q4_0 || QTYPE == T_Q4_1) {
        // Byte i of word w holds value 4w + i (low nibble) and 16 + 4w + i (high).
        let q = qvec(at, k, 0u);
        var d = 0.0;
        var m = 0.0;
        if (QTYPE == T_Q4_1) {
            let dm = halves(weights[shape.scale_base + b]);
            d = dm.x;
            m = dm.y;
        } else {
            d = packed_half(shape.scale_base, b);
            m = -8.0 * d;
        }
        for (var w = 0u; w < 4u; w++) {
            let word = vec4<u32>(q[w]);
            v[w] = d * vec4<f32>((word >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(0xfu)) + m;
            v[4u + w] = d * vec4<f32>((word >> vec4<u32>(4u, 12u, 20u, 28u)) & vec4<u32>(0xfu)) + m;
        }
    } else if (QTYPE == T_Q8_0) {
        let d = packed_half(shape.scale_base, b);
        for (var g = 0u; g < 2u; g++) {
            let q = qvec(at, k, g);
            for (var w = 0u; w < 4u; w++) {
                // The word's four signed bytes, each shifted to the top and back down.
                let bytes = bitcast<vec4<i32>>(vec4<u32>(q[w]) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u);
                v[4u * g + w] = d * vec4<f32>(bytes);
            }
        }
    } else if (QTYPE == T_F16) {
        for (var g = 0u; g < 4u; g++) {
            let q = qvec(at, k, g);
            v[2u * g] = vec4<f32>(halves(q.x), halves(q.y));
            v[2u * g + 1u] = vec4<f32>(halves(q.z), halves(q.w));
        }
    } else {
        for (var g = 0u; g < 8u; g++) {
            v[g] = bitcast<vec4<f32>>(qvec(at, k, g));
        }
    }
    return v;
}

fn matmul_tiled(tile: u32, lid: u32, chunk: u32) {
    let r0 = tile * tile_rows();
    let blocks = shape.cols / 32u;
    let row_vec4s = shape.cols / 4u;
    let first = chunk * TOKEN_CHUNK;
    let end = min(first + TOKEN_CHUNK, step.tokens);
    let g = lid / 8u;
    let u = lid % 8u;
    // What this thread loads each block: a tile row's weights (lid < 32) or a token's x.
    let at = row_at(tile_row(r0, lid % 32u), shape.rows, blocks);
    let load_t = first + lid % 32u;
    var acc = array<vec4<f32>, 4>(); // acc[j]: tile row thread_tile_row(g, j), tokens u + 8i (i = 0 .. 3)
    var sum_sq = 0.0; // of the token this thread loads (lid >= 32)
    for (var k = 0u; k < blocks; k++) {
        if (lid < 32u) {
            let v = decoded_block(at, k);
            for (var j = 0u; j < 8u; j++) {
                w_tile[lid][j] = v[j];
            }
        } else {
            for (var j = 0u; j < 8u; j++) {
                var xv = vec4<f32>(0.0);
                if (load_t < end) {
                    xv = x[load_t * row_vec4s + 8u * k + j];
                    sum_sq += dot(xv, xv);
                    xv *= gain4(8u * k + j);
                }
                x_tile[lid - 32u][j] = xv;
            }
        }
        workgroupBarrier();
        for (var j = 0u; j < 8u; j++) {
            let xs = mat4x4<f32>(x_tile[u][j], x_tile[u + 8u][j], x_tile[u + 16u][j], x_tile[u + 24u][j]);
            for (var i = 0u; i < 4u; i++) {
                // (a row vector times the tokens' columns: the row's dot with each token)
                acc[i] += w_tile[thread_tile_row(g, i)][j] * xs;
            }
        }
        workgroupBarrier(); // the tiles are written again for the next block
    }
    if (lid >= 32u) {
        let normalised = NORM_FUSED && (shape.flags & 2u) != 0u;
        tile_norms[lid - 32u] = select(1.0, inverseSqrt(sum_sq / f32(shape.cols) + shape.eps), normalised);
    }
    workgroupBarrier();
    for (var i = 0u; i < 4u; i++) {
        let t = first + u + 8u * i;
        if (t >= end) {
            break;
        }
        let n = tile_norms[u + 8u * i];
        if (SWIGLU) {
            for (var h = 0u; h < 2u; h++) {
                let r = r0 + 2u * g + h;
                if (r < shape.rows / 2u) {
                    store_swiglu(t, r, acc[h][i] * n, acc[2u + h][i] * n);
                }
            }
        } else {
            let rows = vec4<u32>(r0 + 4u * g) + vec4<u32>(0u, 1u, 2u, 3u);
            store_rows4(t, rows, vec4<f32>(acc[0][i], acc[1][i], acc[2][i], acc[3][i]) * n);
        }
    }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let tile = wg.y * groups.x + wg.x;
    // Uniform for the workgroup, so every thread left reaches every barrier.
    if (tile * tile_rows() >= select(shape.rows, shape.rows / 2u, SWIGLU)) {
        return;
    }
    matmul_tiled(tile, lid, wg.z);
}
