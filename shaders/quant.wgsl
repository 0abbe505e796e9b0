// Quantized weight access: prepended to every kernel that reads weights.
// The kernel declares `weights: array<u32>`; QTYPE is set per pipeline.
//
// GPU layout of a weight matrix (rows × cols, cols a multiple of 32), packed
// by crate/src/gpu/weights.rs: rows in groups of ROW_GROUP (the last one may
// be shorter), each group's rows interleaved in 16-byte groups. Words
// 4g .. 4g+3 of block k of row r are vec4 number
//   first * blocks * qs_vec4s() + (k * qs_vec4s() + g) * n + (r - first)
// for the group's first row `first` and its row count n (see `row_at`), so
// threads on neighbouring rows read neighbouring 16-byte words (one wide
// load each), and a group's whole rows are one run of memory: CPU-based
// adapters run a few neighbouring threads at once (lavapipe 8, SwiftShader
// 4) through every block of their rows, and read twice as fast from one run
// as from words a whole matrix's width apart (interleaving all rows). Scales
// follow from word `scale_base` (a multiple of 4), interleaved the same way,
// one per block: scale index first * blocks + k * n + (r - first).
//   Q4_0: f16 d, two per word; value = d * (q - 8), q a nibble
//   Q4_1: (d, m) f16 pair, one word; value = d * q + m
//   Q8_0: f16 d, two per word; value = d * q, q a signed byte
//   F16 : no scales, two halves per word
//   F32 : no scales, one value per word
// Nibbles: byte j of a Q4 block holds value j (low) and value j + 16 (high).

const T_F32: u32 = 0u;
const T_F16: u32 = 1u;
const T_Q4_0: u32 = 2u;
const T_Q4_1: u32 = 3u;
const T_Q8_0: u32 = 8u;

override QTYPE: u32 = T_Q4_1;

fn qs_words() -> u32 {
    if (QTYPE == T_Q4_0 || QTYPE == T_Q4_1) { return 4u; }
    if (QTYPE == T_Q8_0) { return 8u; }
    if (QTYPE == T_F16) { return 16u; }
    return 32u;
}

// Exact f16 -> f32 (subnormal scales are common in Q4_1 minimums and must not
// be flushed to zero, which unpack2x16float may do).
fn f16_to_f32(h: u32) -> f32 {
    let sign = select(1.0, -1.0, (h & 0x8000u) != 0u);
    let e = (h >> 10u) & 0x1fu;
    let m = h & 0x3ffu;
    if (e == 0u) {
        return sign * f32(m) * 5.9604644775390625e-8; // m * 2^-24
    }
    return bitcast<f32>(((h & 0x8000u) << 16u) | ((e + 112u) << 23u) | (m << 13u));
}

// Set where this adapter's unpack2x16float was found to convert subnormal
// halves exactly (gpu::context probes it): one instruction on most
// hardware and on lavapipe, and a sixth off SwiftShader's Q4_1 matmul.
override HALF_UNPACK_EXACT: bool = false;

// The two halves of a word, low one first, exactly.
fn halves(word: u32) -> vec2<f32> {
    if (HALF_UNPACK_EXACT) {
        return unpack2x16float(word);
    }
    return vec2<f32>(f16_to_f32(word & 0xffffu), f16_to_f32(word >> 16u));
}

// f16 number `b` of an array packed two per word, starting at word `base`.
fn packed_half(base: u32, b: u32) -> f32 {
    return halves(weights[base + b / 2u])[b & 1u];
}

// The four signed bytes of a word plus 128, each left in place as the
// nibbles are (see NIBBLE_MASKS): component j is (byte j + 128) times
// 2^(8j), but the last times 2^16 (so all stay below 2^31); BYTE_SCALE
// takes x to match, exactly.
const BYTE_MASKS = vec4<u32>(0xffu, 0xff00u, 0xff0000u, 0xff0000u);
const BYTE_SCALE = vec4<f32>(1.0, 0.00390625, 0.0000152587890625, 0.0000152587890625);
fn bytes_offset(word: u32) -> vec4<f32> {
    let v = word ^ 0x80808080u;
    return vec4<f32>(bitcast<vec4<i32>>(vec4<u32>(v, v, v, v >> 8u) & BYTE_MASKS));
}

// The low and the high nibbles of the four bytes of a word, each left in
// place: component j is nibble j times 2^(8j), exactly (4 significant bits).
// Dotted with x · NIBBLE_SCALE (exact: powers of two) they give exactly the
// products of the nibbles and x, without shifting each byte down: software
// adapters have no per-lane variable shift and emulate it (SwiftShader), and
// the masked values, below 2^31, convert as signed integers (one instruction).
const NIBBLE_MASKS = vec4<u32>(0xfu, 0xf00u, 0xf0000u, 0xf000000u);
const NIBBLE_SCALE = vec4<f32>(1.0, 0.00390625, 0.0000152587890625, 0.000000059604644775390625);
fn nibbles_lo(word: u32) -> vec4<f32> {
    return vec4<f32>(bitcast<vec4<i32>>(vec4<u32>(word) & NIBBLE_MASKS));
}
fn nibbles_hi(word: u32) -> vec4<f32> {
    return vec4<f32>(bitcast<vec4<i32>>(vec4<u32>(word >> 4u) & NIBBLE_MASKS));
}

// 16-byte groups of quant words per block.
fn qs_vec4s() -> u32 {
    return qs_words() / 4u;
}

const ROW_GROUP: u32 = 8u;

// Where a row lies: its 16-byte group g of block k is vec4 number
// `quants + (k * qs_vec4s() + g) * step`, that block's scale number `scales + k * step`.
struct RowAt {
    quants: u32,
    scales: u32,
    step: u32,
}

// Where `row` of a matrix of `rows` rows of `blocks` blocks lies.
fn row_at(row: u32, rows: u32, blocks: u32) -> RowAt {
    let first = row - row % ROW_GROUP;
    let inner = row - first;
    return RowAt(first * blocks * qs_vec4s() + inner, first * blocks + inner, min(ROW_GROUP, rows - first));
}

// Word w of block k of the row at `at`.
fn qword(at: RowAt, k: u32, w: u32) -> u32 {
    return weights[(at.quants + (k * qs_vec4s() + w / 4u) * at.step) * 4u + w % 4u];
}

// The 32 values of block k of the row at `at`.
fn dequant_block(at: RowAt, k: u32, scale_base: u32) -> array<f32, 32> {
    var v: array<f32, 32>;
    let b = at.scales + k * at.step; // scale index
    if (QTYPE == T_Q4_1) {
        let dm = weights[scale_base + b];
        let dm_f = halves(dm);
        let d = dm_f.x;
        let m = dm_f.y;
        for (var w = 0u; w < 4u; w++) {
            let word = qword(at, k, w);
            for (var j = 0u; j < 4u; j++) {
                let byte = (word >> (8u * j)) & 0xffu;
                v[4u * w + j] = d * f32(byte & 0xfu) + m;
                v[16u + 4u * w + j] = d * f32(byte >> 4u) + m;
            }
        }
    } else if (QTYPE == T_Q4_0) {
        let d = packed_half(scale_base, b);
        for (var w = 0u; w < 4u; w++) {
            let word = qword(at, k, w);
            for (var j = 0u; j < 4u; j++) {
                let byte = (word >> (8u * j)) & 0xffu;
                v[4u * w + j] = d * f32(i32(byte & 0xfu) - 8);
                v[16u + 4u * w + j] = d * f32(i32(byte >> 4u) - 8);
            }
        }
    } else if (QTYPE == T_Q8_0) {
        let d = packed_half(scale_base, b);
        for (var w = 0u; w < 8u; w++) {
            let word = bitcast<i32>(qword(at, k, w));
            for (var j = 0u; j < 4u; j++) {
                v[4u * w + j] = d * f32(extractBits(word, 8u * j, 8u));
            }
        }
    } else if (QTYPE == T_F16) {
        for (var w = 0u; w < 16u; w++) {
            let word = qword(at, k, w);
            let h = halves(word);
            v[2u * w] = h.x;
            v[2u * w + 1u] = h.y;
        }
    } else {
        for (var i = 0u; i < 32u; i++) {
            v[i] = bitcast<f32>(qword(at, k, i));
        }
    }
    return v;
}
