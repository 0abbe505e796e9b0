// Quantized matrix product: out[t, r] = Σ_c W[r, c] · x[t, c] for every token t.
// One thread per output row, no barriers: neighbouring threads read
// neighbouring 16-byte words of the weights (row groups interleaved, see
// quant.wgsl) with one wide load each (CPU-based adapters emulate every load
// lane by lane, so fewer, wider loads matter as much there as on a GPU); with
// several tokens, each weight word is decoded once for four of them, and
// with RPT = 4 each load of x serves four rows too (a 4 × 4 register tile).
//
// Several matrices stacked in one (a layer's Q, K and V) are one product
// whose rows go to up to three outputs: rows below `split1` to `out`, then
// up to `split2` to `out_k` (the keys: for RoPE to rotate into the cache,
// or with ROPE_IN_QKV the key cache itself), the rest to `out_v`, the value
// cache (of element type `kv`), at row pos0 + t. With ROPE_IN_QKV (set by
// the kernel table for stacked matrices: `Variants::rope_in_qkv`) each
// thread of such a product takes two pairs of neighbouring rows (four rows
// per thread), or each group of LANES threads one pair (matmul_lanes.wgsl),
// and rotates the queries' and keys' pairs by RoPE as it writes them
// (`rope_pairs` > 0): one dispatch fewer per layer. ROPE_IN_QKV, `key_out`
// (out_k's type) and `rope_pair` come from matmul_rope.wgsl or
// matmul_no_rope.wgsl. With SWIGLU, the matrix is a layer's FFN gate
// over its up projection (2 · f rows) and out[t, r] = silu(gate) · up for
// r < f: each thread computes gate row r before up row r + f (RPT = 2 or 4).
//
// Bindings (group 0):
//   0 shape    uniform { rows, cols, scale_base, split1, split2, head_dim, rope_pairs, flags, eps }
//   1 step     uniform Step (tokens, pos0)
//   2 weights  rows × cols, quantized (see quant.wgsl); the scales are read here
//   3 x        tokens × cols f32, read as vec4 (by `x_at`: matmul_x_storage.wgsl;
//              matmul_x_attention.wgsl reads the attention's runs here instead)
//   4 out      tokens × split1 f32
//   5 quants   the same buffer as 2, read as vec4<u32>: each thread loads a
//              block's quant words 16 bytes at a time
//   6 out_k    tokens × (split2 - split1) f32, or with ROPE_IN_QKV (pos0 +
//              tokens) × (split2 - split1) kv (a spare buffer when split1 = rows)
//   7 out_v    (pos0 + tokens) × (rows - split2) kv (likewise when split2 = rows)
//   8 table    with ROPE_IN_QKV (every matmul kernel binds it, the QKV
//              product reads it): RoPE's context × rope_pairs vec2 (cos,
//              sin), as shaders/rope.wgsl reads it (matmul_rope.wgsl)
//   9 gain     with NORM_FUSED (matmul_norm.wgsl, GPUs: every matmul
//              kernel binds it): the RMSNorm's gain, cols f32, read where
//              `flags` says so
//
// With NORM_FUSED, `flags` bit 0 adds the product to `out` (a residual add:
// out is the residual stream) and bit 1 multiplies x by the RMSNorm of each
// token's row (1 / sqrt(mean x² + eps)) and by `gain` as it is read, so the
// layer's norm and residual add need no dispatches of their own.
// Dispatch: ceil(ceil(rows / RPT) / WG) workgroups, 2D-folded (gpu::grid_2d).

struct Shape {
    rows: u32,
    cols: u32,
    scale_base: u32,
    split1: u32,
    split2: u32,
    head_dim: u32,
    rope_pairs: u32,
    flags: u32,
    eps: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

override WG: u32 = 64u;
// Rows per thread: thread t computes rows t, t + stride, ... (stride =
// ceil(rows / RPT)), so neighbouring threads still read neighbouring words;
// with one token, the rows share every load of x (CPU-based adapters, where
// those broadcast loads cost as much as the weights, use 4; GPUs use 1).
override RPT: u32 = 1u;
// Set for a layer's stacked Q, K and V (three outputs) and for its stacked
// FFN gate and up (SwiGLU): other products keep a store with no branches,
// as on CPU-based adapters every store in a branch costs a pass over the lanes.
override SPLIT: bool = false;
override SWIGLU: bool = false;

@group(0) @binding(0) var<uniform> shape: Shape;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> weights: array<u32>;
@group(0) @binding(3) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read> quants: array<vec4<u32>>;
@group(0) @binding(6) var<storage, read_write> out_k: array<key_out>;
@group(0) @binding(7) var<storage, read_write> out_v: array<kv>;

// Group g (16 bytes) of the quant words of block k of the row at `at`.
fn qvec(at: RowAt, k: u32, g: u32) -> vec4<u32> {
    return quants[at.quants + (k * qs_vec4s() + g) * at.step];
}

// Where four rows lie (a `RowAt` per component).
struct Rows4At {
    quants: vec4<u32>,
    scales: vec4<u32>,
    step: vec4<u32>,
}

fn rows4_at(r: vec4<u32>, blocks: u32) -> Rows4At {
    let a = array<RowAt, 4>(row_at(r.x, shape.rows, blocks), row_at(r.y, shape.rows, blocks),
                            row_at(r.z, shape.rows, blocks), row_at(r.w, shape.rows, blocks));
    return Rows4At(vec4<u32>(a[0].quants, a[1].quants, a[2].quants, a[3].quants),
                   vec4<u32>(a[0].scales, a[1].scales, a[2].scales, a[3].scales),
                   vec4<u32>(a[0].step, a[1].step, a[2].step, a[3].step));
}

// Group g of block k of each of the four rows at `at`.
fn qvecs4(at: Rows4At, k: u32, g: u32) -> array<vec4<u32>, 4> {
    let i = at.quants + (k * qs_vec4s() + g) * at.step;
    return array<vec4<u32>, 4>(quants[i.x], quants[i.y], quants[i.z], quants[i.w]);
}

// SwiGLU output `r` of token t from its gate and up values.
fn store_swiglu(t: u32, r: u32, gate: f32, up: f32) {
    out[t * (shape.rows / 2u) + r] = gate / (1.0 + exp(-gate)) * up; // as shaders/swiglu.wgsl
}

// Writes row `row` of token t's product (see the top of the file).
fn store(t: u32, row: u32, v: f32) {
    if (SWIGLU) {
        // One row at a time (RPT = 2): the gate, until this thread's up row comes.
        let f = shape.rows / 2u;
        if (row < f) {
            out[t * f + row] = v;
        } else {
            store_swiglu(t, row - f, out[t * f + row - f], v);
        }
        return;
    }
    if (!SPLIT || row < shape.split1) {
        let i = t * shape.split1 + row;
        if (NORM_FUSED && (shape.flags & 1u) != 0u) {
            out[i] += v;
        } else {
            out[i] = v;
        }
    } else if (row < shape.split2) {
        out_k[(select(0u, step.pos0, ROPE_IN_QKV) + t) * (shape.split2 - shape.split1) + row - shape.split1] = key_out(v);
    } else {
        out_v[(step.pos0 + t) * (shape.rows - shape.split2) + row - shape.split2] = kv(v);
    }
}

// 8-bit and float types: values per 16-byte group come in `parts()` vec4s;
// part j of group g holds values 4 * (g * parts() + j) .. + 3 of the block,
// to be dotted with x times `part_scale()`: Q8_0's bytes come plus 128 and
// in place (see bytes_offset), and `scaled4` takes 128 · Σ x off again.
// (Q4 blocks are read a word at a time, both nibbles of it together.)
fn parts() -> u32 {
    if (QTYPE == T_Q8_0) { return 4u; }
    if (QTYPE == T_F16) { return 2u; }
    return 1u;
}
fn part(q: vec4<u32>, j: u32) -> vec4<f32> {
    if (QTYPE == T_Q8_0) {
        return bytes_offset(q[j]);
    }
    if (QTYPE == T_F16) {
        return vec4<f32>(halves(q[2u * j]), halves(q[2u * j + 1u]));
    }
    return bitcast<vec4<f32>>(q);
}
fn part_scale() -> vec4<f32> {
    if (QTYPE == T_Q8_0) { return BYTE_SCALE; }
    return vec4<f32>(1.0);
}

// Part j of group q of four rows dotted with one vec4 of x: each row's sum.
fn rows4_part_dot(q: array<vec4<u32>, 4>, j: u32, xv: vec4<f32>) -> vec4<f32> {
    let xs = xv * part_scale();
    return vec4<f32>(dot(part(q[0], j), xs), dot(part(q[1], j), xs), dot(part(q[2], j), xs), dot(part(q[3], j), xs));
}

// Component j of v by selects: SwiftShader keeps a vector indexed by a
// loop variable in memory (its one-token Q4 matmuls 9-18 % faster; lavapipe
// the same; the 8-bit and float types and the four-token tiles, which did
// not gain, index directly).
fn pick(v: vec4<u32>, j: u32) -> u32 {
    return select(select(v.x, v.y, j == 1u), select(v.z, v.w, j == 3u), j >= 2u);
}

// Word w of the Q4 group q of four rows dotted with x's vec4s w (`lo`, the
// low nibbles' values) and 4 + w (`hi`): each row's sum.
fn rows4_nibbles_dot(q: array<vec4<u32>, 4>, w: u32, lo: vec4<f32>, hi: vec4<f32>) -> vec4<f32> {
    let l = lo * NIBBLE_SCALE;
    let h = hi * NIBBLE_SCALE;
    let a = pick(q[0], w);
    let b = pick(q[1], w);
    let c = pick(q[2], w);
    let d = pick(q[3], w);
    return vec4<f32>(dot(nibbles_lo(a), l) + dot(nibbles_hi(a), h), dot(nibbles_lo(b), l) + dot(nibbles_hi(b), h),
                     dot(nibbles_lo(c), l) + dot(nibbles_hi(c), h), dot(nibbles_lo(d), l) + dot(nibbles_hi(d), h));
}

// Block k's scales (four rows at `at`) applied to their Σ q·x given x's vec4 sum `sx`.
fn scaled_rows4(at: Rows4At, k: u32, qx: vec4<f32>, sx: vec4<f32>) -> vec4<f32> {
    let sum_x = dot(sx, vec4<f32>(1.0));
    let b = at.scales + k * at.step;
    return vec4<f32>(scaled(b.x, qx.x, sum_x), scaled(b.y, qx.y, sum_x), scaled(b.z, qx.z, sum_x), scaled(b.w, qx.w, sum_x));
}

// The block's scale (index b) applied to Σ q·x (`qx`) given Σ x (`sx`, Q4
// types), for up to four tokens at once with one load of the scale:
// Σ (d·q + m)·x = d·Σ q·x + m·Σ x.
fn scaled4(b: u32, qx: vec4<f32>, sx: vec4<f32>) -> vec4<f32> {
    if (QTYPE == T_Q4_1) {
        let dm = weights[shape.scale_base + b];
        let h = halves(dm); // (d, m)
        return h.x * qx + h.y * sx;
    }
    if (QTYPE == T_Q4_0) {
        return packed_half(shape.scale_base, b) * (qx - 8.0 * sx);
    }
    if (QTYPE == T_Q8_0) {
        return packed_half(shape.scale_base, b) * (qx - 128.0 * sx);
    }
    return qx;
}
fn scaled(b: u32, qx: f32, sum_x: f32) -> f32 {
    return scaled4(b, vec4<f32>(qx), vec4<f32>(sum_x)).x;
}

// Σ_j W[row, 32k + j] · x[x0 + j] for one token (`x0` a vec4 index), the row at `at`.
fn block_dot(at: RowAt, k: u32, x0: u32) -> f32 {
    var qx = 0.0;
    var sx = vec4<f32>(0.0);
    if (QTYPE == T_Q4_0 || QTYPE == T_Q4_1) {
        let q = qvec(at, k, 0u);
        for (var w = 0u; w < 4u; w++) {
            let lo = x_at(x0 + w) * gain4(8u * k + w);           // values 4w .. 4w+3
            let hi = x_at(x0 + 4u + w) * gain4(8u * k + 4u + w); // values 16+4w .. 16+4w+3
            qx += dot(nibbles_lo(q[w]), lo * NIBBLE_SCALE) + dot(nibbles_hi(q[w]), hi * NIBBLE_SCALE);
            sx += lo + hi;
        }
    } else {
        for (var g = 0u; g < qs_vec4s(); g++) {
            let q = qvec(at, k, g);
            for (var j = 0u; j < parts(); j++) {
                let xv = x_at(x0 + g * parts() + j) * gain4(8u * k + g * parts() + j);
                qx += dot(part(q, j), xv * part_scale());
                sx += xv;
            }
        }
    }
    return scaled(at.scales + k * at.step, qx, dot(sx, vec4<f32>(1.0)));
}

// block_dot for four tokens at once (vec4 indices x0..x3): each weight word
// is decoded once and used four times. Component j belongs to token j.
fn block_dot4(at: RowAt, k: u32, x0: u32, x1: u32, x2: u32, x3: u32) -> vec4<f32> {
    var qx = vec4<f32>(0.0);
    var sx = vec4<f32>(0.0);
    if (QTYPE == T_Q4_0 || QTYPE == T_Q4_1) {
        let ones = vec4<f32>(1.0);
        let q = qvec(at, k, 0u);
        for (var w = 0u; w < 4u; w++) {
            let lo = nibbles_lo(q[w]);
            let hi = nibbles_hi(q[w]);
            let gl = gain4(8u * k + w);
            let gh = gain4(8u * k + 4u + w);
            let l0 = x_at(x0 + w) * gl; let h0 = x_at(x0 + 4u + w) * gh;
            let l1 = x_at(x1 + w) * gl; let h1 = x_at(x1 + 4u + w) * gh;
            let l2 = x_at(x2 + w) * gl; let h2 = x_at(x2 + 4u + w) * gh;
            let l3 = x_at(x3 + w) * gl; let h3 = x_at(x3 + 4u + w) * gh;
            let s = NIBBLE_SCALE;
            qx += vec4<f32>(dot(lo, l0 * s) + dot(hi, h0 * s), dot(lo, l1 * s) + dot(hi, h1 * s),
                            dot(lo, l2 * s) + dot(hi, h2 * s), dot(lo, l3 * s) + dot(hi, h3 * s));
            sx += vec4<f32>(dot(l0 + h0, ones), dot(l1 + h1, ones), dot(l2 + h2, ones), dot(l3 + h3, ones));
        }
    } else {
        for (var g = 0u; g < qs_vec4s(); g++) {
            let q = qvec(at, k, g);
            for (var j = 0u; j < parts(); j++) {
                let v = part(q, j);
                let i = g * parts() + j;
                let gi = gain4(8u * k + i);
                let xs = mat4x4<f32>(x_at(x0 + i) * gi, x_at(x1 + i) * gi, x_at(x2 + i) * gi, x_at(x3 + i) * gi);
                let s = part_scale();
                qx += vec4<f32>(dot(v, xs[0] * s), dot(v, xs[1] * s), dot(v, xs[2] * s), dot(v, xs[3] * s));
                sx += vec4<f32>(1.0) * xs;
            }
        }
    }
    return scaled4(at.scales + k * at.step, qx, sx);
}

// block_dot for the four rows at `at` at once (one token): each load of x serves all four.
fn block_dot_rows4(at: Rows4At, k: u32, x0: u32) -> vec4<f32> {
    var qx = vec4<f32>(0.0);
    var sx = vec4<f32>(0.0);
    if (QTYPE == T_Q4_0 || QTYPE == T_Q4_1) {
        let q = qvecs4(at, k, 0u);
        for (var w = 0u; w < 4u; w++) {
            let lo = x[x0 + w];
            let hi = x[x0 + 4u + w];
            sx += lo + hi;
            qx += rows4_nibbles_dot(q, w, lo, hi);
        }
    } else {
        for (var g = 0u; g < qs_vec4s(); g++) {
            let q = qvecs4(at, k, g);
            for (var j = 0u; j < parts(); j++) {
                let xv = x[x0 + g * parts() + j];
                sx += xv;
                qx += rows4_part_dot(q, j, xv);
            }
        }
    }
    return scaled_rows4(at, k, qx, sx);
}

// Four rows `r` × four tokens (vec4 indices x0..x3) at once: column j of
// the result is row j's sums for the four tokens. Each load of a weight word
// serves four tokens and each load of x four rows (a register tile: on
// CPU-based adapters the loads, not the arithmetic, are what costs).
fn block_dot_rows4_tokens4(at: Rows4At, k: u32, x0: u32, x1: u32, x2: u32, x3: u32) -> mat4x4<f32> {
    var qx = mat4x4<f32>();
    var sx = vec4<f32>(0.0);
    if (QTYPE == T_Q4_0 || QTYPE == T_Q4_1) {
        let q = qvecs4(at, k, 0u);
        for (var w = 0u; w < 4u; w++) {
            let l = mat4x4<f32>(x[x0 + w], x[x1 + w], x[x2 + w], x[x3 + w]);
            let h = mat4x4<f32>(x[x0 + 4u + w], x[x1 + 4u + w], x[x2 + 4u + w], x[x3 + 4u + w]);
            sx += vec4<f32>(1.0) * (l + h); // Σ of each token's values (a row vector times the columns)
            qx += tile_nibbles_dot(q, w, l, h);
        }
    } else {
        for (var g = 0u; g < qs_vec4s(); g++) {
            let q = qvecs4(at, k, g);
            for (var p = 0u; p < parts(); p++) {
                let i = g * parts() + p;
                let xs = mat4x4<f32>(x[x0 + i], x[x1 + i], x[x2 + i], x[x3 + i]);
                sx += vec4<f32>(1.0) * xs;
                qx += tile_part_dot(q, p, xs);
            }
        }
    }
    return scaled_tile(at, k, qx, sx);
}

// Block k's scales (four rows at `at`) applied to a tile's Σ q·x given each
// token's Σ x (`sx`).
fn scaled_tile(at: Rows4At, k: u32, qx: mat4x4<f32>, sx: vec4<f32>) -> mat4x4<f32> {
    let b = at.scales + k * at.step;
    return mat4x4<f32>(scaled4(b.x, qx[0], sx), scaled4(b.y, qx[1], sx), scaled4(b.z, qx[2], sx), scaled4(b.w, qx[3], sx));
}

// Part p of group q of four rows dotted with four tokens' vec4 `xs` (column
// j token j's): column j of the result is row j's sums for the four tokens.
// (Whole matrices rather than a loop over the rows: SwiftShader keeps a
// matrix indexed by a loop variable in memory, and prefilled at half the speed.)
fn tile_part_dot(q: array<vec4<u32>, 4>, p: u32, xs: mat4x4<f32>) -> mat4x4<f32> {
    let s = part_scale();
    let scaled = mat4x4<f32>(xs[0] * s, xs[1] * s, xs[2] * s, xs[3] * s);
    return mat4x4<f32>(part(q[0], p) * scaled, part(q[1], p) * scaled, part(q[2], p) * scaled, part(q[3], p) * scaled);
}

// Word w of the Q4 group q of four rows dotted with four tokens' vec4s w
// (`l`, column j token j's, the low nibbles' values) and 4 + w (`h`):
// column j of the result is row j's sums for the four tokens (whole
// matrices again, as in tile_part_dot).
fn tile_nibbles_dot(q: array<vec4<u32>, 4>, w: u32, l: mat4x4<f32>, h: mat4x4<f32>) -> mat4x4<f32> {
    let s = NIBBLE_SCALE;
    let ls = mat4x4<f32>(l[0] * s, l[1] * s, l[2] * s, l[3] * s);
    let hs = mat4x4<f32>(h[0] * s, h[1] * s, h[2] * s, h[3] * s);
    // (nibbles · each token's values) for row j: a row vector times ls and hs.
    return mat4x4<f32>(nibbles_lo(q[0][w]) * ls + nibbles_hi(q[0][w]) * hs, nibbles_lo(q[1][w]) * ls + nibbles_hi(q[1][w]) * hs,
                       nibbles_lo(q[2][w]) * ls + nibbles_hi(q[2][w]) * hs, nibbles_lo(q[3][w]) * ls + nibbles_hi(q[3][w]) * hs);
}

// Threads the product needs: one per RPT rows (LANES per RPT rows with
// matmul_lanes.wgsl).
fn matmul_threads() -> u32 {
    return (shape.rows + RPT - 1u) / RPT;
}

// The four rows of `thread` (RPT = 4): rows thread + j · stride, so that
// neighbouring threads read neighbouring words; with ROPE_IN_QKV, in the
// QKV product, the pairs 2 (thread + h · stride) + {0, 1} (h = 0, 1), so
// that each RoPE pair (neighbouring rows: a head's dimensions 2i, 2i + 1)
// is one thread's. (Both cover every row: stride = ceil(rows / 4).)
fn rows4_of(thread: u32, stride: u32) -> vec4<u32> {
    if (SPLIT && ROPE_IN_QKV) {
        return vec4<u32>(2u * thread, 2u * thread + 1u, 2u * (thread + stride), 2u * (thread + stride) + 1u);
    }
    return vec4<u32>(thread) + vec4<u32>(0u, 1u, 2u, 3u) * stride;
}

// Writes token t's values `v` of the four `rows` (rows4_of), those past the
// last row not at all; with ROPE_IN_QKV, the queries' and keys' pairs
// rotated first.
fn store_rows4(t: u32, rows: vec4<u32>, v: vec4<f32>) {
    var w = v;
    if (SPLIT && ROPE_IN_QKV) {
        w = vec4<f32>(rope_pair(t, rows.x, w.xy), rope_pair(t, rows.z, w.zw));
    }
    for (var j = 0u; j < 4u; j++) {
        if (rows[j] < shape.rows) {
            store(t, rows[j], w[j]);
        }
    }
}

// The product for thread `thread_id`. The entry point is in
// matmul_x_loads.wgsl or matmul_x_subgroup.wgsl, which also give
// `block_dot_rows4_x`, block_dot_rows4 with x loaded by each thread or
// shared in its subgroup (`lane`: the thread's subgroup invocation id
// where that is used).
fn matmul(thread_id: u32, lane: u32) {
    let stride = matmul_threads();
    let blocks = shape.cols / 32u;
    let row_vec4s = shape.cols / 4u;
    if (RPT == 4u) {
        // Threads past the last row that the entry point keeps (their
        // subgroup needs every lane) go on with the last row, and write nothing.
        let live = thread_id < stride;
        let thread = min(thread_id, stride - 1u);
        // Rows past the end read the last row (in bounds) and are not written.
        let rows = rows4_of(thread, stride);
        let r = min(rows, vec4<u32>(shape.rows - 1u));
        let at = rows4_at(r, blocks);
        // Four tokens at a time (a 4 × 4 tile of rows × tokens), then the rest one by one.
        let full = step.tokens / 4u * 4u;
        for (var t = 0u; t < full; t += 4u) {
            var acc = mat4x4<f32>();
            for (var k = 0u; k < blocks; k++) {
                let o = t * row_vec4s + 8u * k;
                acc += block_dot_rows4_tokens4_x(at, k, o, o + row_vec4s, o + 2u * row_vec4s, o + 3u * row_vec4s, lane);
            }
            if (!live) {
                continue;
            }
            if (SWIGLU) {
                // Rows 0 and 1 of the thread are gate rows, 2 and 3 their up rows.
                for (var i = 0u; i < 4u; i++) {
                    store_swiglu(t + i, thread, acc[0][i], acc[2][i]);
                    store_swiglu(t + i, thread + stride, acc[1][i], acc[3][i]);
                }
                continue;
            }
            for (var i = 0u; i < 4u; i++) {
                store_rows4(t + i, rows, vec4<f32>(acc[0][i], acc[1][i], acc[2][i], acc[3][i]));
            }
        }
        for (var t = full; t < step.tokens; t++) {
            var acc = vec4<f32>(0.0);
            for (var k = 0u; k < blocks; k++) {
                acc += block_dot_rows4_x(at, k, t * row_vec4s + 8u * k, lane);
            }
            if (!live) {
                continue;
            }
            if (SWIGLU) {
                store_swiglu(t, thread, acc.x, acc.z);
                store_swiglu(t, thread + stride, acc.y, acc.w);
                continue;
            }
            store_rows4(t, rows, acc);
        }
        return;
    }
    for (var row = thread_id; row < shape.rows; row += stride) {
        matmul_row(row, blocks, row_vec4s);
    }
}

// One output row for every token: four tokens per pass over the row, then
// the remainder one by one.
fn matmul_row(row: u32, blocks: u32, row_vec4s: u32) {
    let at = row_at(row, shape.rows, blocks);
    let full = step.tokens / 4u * 4u;
    for (var t = 0u; t < full; t += 4u) {
        let x0 = t * row_vec4s;
        var acc = vec4<f32>(0.0);
        for (var k = 0u; k < blocks; k++) {
            let o = x0 + 8u * k;
            acc += block_dot4(at, k, o, o + row_vec4s, o + 2u * row_vec4s, o + 3u * row_vec4s);
        }
        for (var j = 0u; j < 4u; j++) {
            store(t + j, row, acc[j]);
        }
    }
    for (var t = full; t < step.tokens; t++) {
        var acc = 0.0;
        for (var k = 0u; k < blocks; k++) {
            acc += block_dot(at, k, t * row_vec4s + 8u * k);
        }
        store(t, row, acc);
    }
}
