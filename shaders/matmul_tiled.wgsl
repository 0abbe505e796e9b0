// Entry point of shaders/matmul.wgsl for a prompt's tokens on GPUs
// (`Variants::matmul_tiled`, after matmul_x_loads.wgsl): each workgroup of
// TILE_THREADS (256) threads computes a tile of TILE_ROWS rows ×
// TOKEN_CHUNK tokens, one 32-column block at a time. Per block, every
// thread decodes a quarter word's worth of one tile row's block (a vec4 of
// its values) and loads a vec4 of one token's x into workgroup memory;
// then each multiplies 2 rows × 2 tokens out of workgroup memory. A weight
// is decoded once per tile instead of once per thread group and 8 tokens
// (matmul_lanes.wgsl), and an x value read once per tile instead of once
// per row. The next block's loads are issued before the current block's
// products, so their latency is hidden behind them. (With as few tiles as
// a 128-token chunk of a small model has, a GPU runs only one or two
// workgroups per core: 256 threads with 2 × 2 outputs each keep more loads
// in flight than 64 with 4 × 4 did.)
//
// Tile rows: rows r0 .. r0 + 31; with SWIGLU, gate rows r0 .. r0 + 15 and
// their up rows f + r0 .. (f = rows / 2), so that each thread holds a gate
// row and its up row. Thread (g, u) = (lid / 16, lid % 16) holds tile rows
// 2g, 2g + 1 (SWIGLU: gate row g and its up row 16 + g), so the QKV
// product's RoPE pairs (2i, 2i + 1) are one thread's, and the tile's
// tokens u and u + 16.
// Dispatch: one workgroup per tile of rows (2D-folded), z: the prompt's
// tokens in chunks of TOKEN_CHUNK (32).

override TOKEN_CHUNK: u32 = 32u;

const TILE_ROWS: u32 = 32u;
const TILE_THREADS: u32 = 256u;

// The tile's weights, decoded: row i's block as 8 vec4s (the block's values
// 4j .. 4j + 3). Rows are 9 vec4s apart (one unused) and so are tokens
// below, so that threads reading different rows or tokens at the same j
// hit different banks.
var<workgroup> w_tile: array<array<vec4<f32>, 9>, TILE_ROWS>;
// The tile's tokens' values of x for the same 32 columns (times the
// norm's gain where x is normalised).
var<workgroup> x_tile: array<array<vec4<f32>, 9>, 32>;
// Where x is normalised (matmul_norm.wgsl's `flags` bit 1), the sums of
// squares of each token's x that its 8 loading threads gathered (token t's
// at 8t .. 8t + 7), then each token's 1 / rms (else 1). (matmul_norm.wgsl's
// own sums would take the workgroup past WebGPU's 16 KiB with the tiles.)
var<workgroup> tile_sums: array<f32, 256>;
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

// The tile row of thread group g's row number h (0 or 1).
fn thread_tile_row(g: u32, h: u32) -> u32 {
    return select(2u * g + h, g + 16u * h, SWIGLU);
}

// Values 4j .. 4j + 3 of block k of the row at `at`.
fn decoded_part(at: RowAt, k: u32, j: u32) -> vec4<f32> {
    let b = at.scales + k * at.step;
    if (QTYPE == T_Q4_0 || QTYPE == T_Q4_1) {
        // Byte i of word w holds value 4w + i (low nibble) and 16 + 4w + i (high).
        let word = vec4<u32>(qword(at, k, j % 4u));
        let nibbles = vec4<f32>((word >> (vec4<u32>(0u, 8u, 16u, 24u) + 4u * (j / 4u))) & vec4<u32>(0xfu));
        if (QTYPE == T_Q4_1) {
            let dm = halves(weights[shape.scale_base + b]);
            return dm.x * nibbles + dm.y;
        }
        let d = packed_half(shape.scale_base, b);
        return d * (nibbles - 8.0);
    } else if (QTYPE == T_Q8_0) {
        // The word's four signed bytes, each shifted to the top and back down.
        let bytes = bitcast<vec4<i32>>(vec4<u32>(qword(at, k, j)) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u);
        return packed_half(shape.scale_base, b) * vec4<f32>(bytes);
    } else if (QTYPE == T_F16) {
        return vec4<f32>(halves(qword(at, k, 2u * j)), halves(qword(at, k, 2u * j + 1u)));
    }
    return bitcast<vec4<f32>>(qvec(at, k, j));
}

// Token t's (first <= t < end) vec4 i of x, else zeros.
fn x_part(t: u32, end: u32, i: u32, row_vec4s: u32) -> vec4<f32> {
    if (t < end) {
        return x[t * row_vec4s + i];
    }
    return vec4<f32>(0.0);
}

// Tile rows `r` and r + 1 of token t: rotated first where they are a RoPE
// pair (r even), those past the last row not written.
fn store_rows2(t: u32, r: u32, v: vec2<f32>) {
    var w = v;
    if (SPLIT && ROPE_IN_QKV) {
        w = rope_pair(t, r, w);
    }
    for (var h = 0u; h < 2u; h++) {
        if (r + h < shape.rows) {
            store(t, r + h, w[h]);
        }
    }
}

fn matmul_tiled(tile: u32, lid: u32, chunk: u32) {
    let r0 = tile * tile_rows();
    let blocks = shape.cols / 32u;
    let row_vec4s = shape.cols / 4u;
    let first = chunk * TOKEN_CHUNK;
    let end = min(first + TOKEN_CHUNK, step.tokens);
    // What this thread loads each block: vec4 j of tile row i's weights and
    // of tile token i's x.
    let i = lid / 8u;
    let j = lid % 8u;
    let at = row_at(tile_row(r0, i), shape.rows, blocks);
    let load_t = first + i;
    // What it multiplies: tile rows thread_tile_row(g, h), tokens u and u + 16.
    let g = lid / 16u;
    let u = lid % 16u;
    var acc = array<vec2<f32>, 2>(); // acc[h]: row h's values for the two tokens
    var sum_sq = 0.0; // of x's vec4 j of token i, over the blocks
    var w_next = decoded_part(at, 0u, j);
    var x_next = x_part(load_t, end, j, row_vec4s);
    for (var k = 0u; k < blocks; k++) {
        w_tile[i][j] = w_next;
        sum_sq += dot(x_next, x_next);
        x_tile[i][j] = x_next * gain4(8u * k + j);
        workgroupBarrier();
        if (k + 1u < blocks) {
            w_next = decoded_part(at, k + 1u, j);
            x_next = x_part(load_t, end, 8u * (k + 1u) + j, row_vec4s);
        }
        for (var c = 0u; c < 8u; c++) {
            let xs = mat2x4<f32>(x_tile[u][c], x_tile[u + 16u][c]);
            for (var h = 0u; h < 2u; h++) {
                // (a row vector times the tokens' columns: the row's dot with each token)
                acc[h] += w_tile[thread_tile_row(g, h)][c] * xs;
            }
        }
        workgroupBarrier(); // the tiles are written again for the next block
    }
    let normalised = NORM_FUSED && (shape.flags & 2u) != 0u;
    if (normalised) { // uniform: the flag is the dispatch's
        tile_sums[lid] = sum_sq;
        workgroupBarrier();
        if (lid < 32u) {
            var s = 0.0;
            for (var p = 0u; p < 8u; p++) {
                s += tile_sums[8u * lid + p];
            }
            tile_norms[lid] = inverseSqrt(s / f32(shape.cols) + shape.eps);
        }
        workgroupBarrier();
    }
    for (var q = 0u; q < 2u; q++) {
        let tt = u + 16u * q;
        let t = first + tt;
        if (t >= end) {
            break;
        }
        let n = select(1.0, tile_norms[tt], normalised);
        if (SWIGLU) {
            let r = r0 + g;
            if (r < shape.rows / 2u) {
                store_swiglu(t, r, acc[0][q] * n, acc[1][q] * n);
            }
        } else {
            store_rows2(t, r0 + 2u * g, vec2<f32>(acc[0][q], acc[1][q]) * n);
        }
    }
}

@compute @workgroup_size(TILE_THREADS)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let tile = wg.y * groups.x + wg.x;
    // Uniform for the workgroup, so every thread left reaches every barrier.
    if (tile * tile_rows() >= select(shape.rows, shape.rows / 2u, SWIGLU)) {
        return;
    }
    matmul_tiled(tile, lid, wg.z);
}
