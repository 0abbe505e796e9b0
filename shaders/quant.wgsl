// Quantized weight access: prepended to every kernel that reads weights.
// The kernel declares `weights: array<u32>`; QTYPE is set per pipeline.
//
// GPU layout of a weight matrix (rows × cols, cols a multiple of 32), packed
// by crate/src/gpu/weights.rs row-interleaved in 16-byte groups: words
// 4g .. 4g+3 of block k of row r are vec4 number (k * qs_vec4s() + g) * rows + r,
// so threads on neighbouring rows read neighbouring 16-byte words (one wide
// load each). Scales follow from word `scale_base` (a multiple of 4), scale
// index k * rows + r:
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

// f16 number `b` of an array packed two per word, starting at word `base`.
fn packed_half(base: u32, b: u32) -> f32 {
    return f16_to_f32((weights[base + b / 2u] >> (16u * (b & 1u))) & 0xffffu);
}

// Four signed bytes of a word, sign-extended.
fn bytes_i8(word: u32) -> vec4<f32> {
    return vec4<f32>((vec4<i32>(bitcast<i32>(word)) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u));
}

// Low and high nibbles of the four bytes of a word.
fn nibbles_lo(word: u32) -> vec4<f32> {
    return vec4<f32>((vec4<u32>(word) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(0xfu));
}
fn nibbles_hi(word: u32) -> vec4<f32> {
    return vec4<f32>((vec4<u32>(word) >> vec4<u32>(4u, 12u, 20u, 28u)) & vec4<u32>(0xfu));
}

// 16-byte groups of quant words per block.
fn qs_vec4s() -> u32 {
    return qs_words() / 4u;
}

// Word w of block k of `row`.
fn qword(row: u32, k: u32, w: u32, rows: u32) -> u32 {
    return weights[((k * qs_vec4s() + w / 4u) * rows + row) * 4u + w % 4u];
}

// The 32 values of block k of `row`.
fn dequant_block(row: u32, k: u32, rows: u32, scale_base: u32) -> array<f32, 32> {
    var v: array<f32, 32>;
    let b = k * rows + row; // scale index
    if (QTYPE == T_Q4_1) {
        let dm = weights[scale_base + b];
        let d = f16_to_f32(dm & 0xffffu);
        let m = f16_to_f32(dm >> 16u);
        for (var w = 0u; w < 4u; w++) {
            let word = qword(row, k, w, rows);
            for (var k = 0u; k < 4u; k++) {
                let byte = (word >> (8u * k)) & 0xffu;
                v[4u * w + k] = d * f32(byte & 0xfu) + m;
                v[16u + 4u * w + k] = d * f32(byte >> 4u) + m;
            }
        }
    } else if (QTYPE == T_Q4_0) {
        let d = packed_half(scale_base, b);
        for (var w = 0u; w < 4u; w++) {
            let word = qword(row, k, w, rows);
            for (var k = 0u; k < 4u; k++) {
                let byte = (word >> (8u * k)) & 0xffu;
                v[4u * w + k] = d * f32(i32(byte & 0xfu) - 8);
                v[16u + 4u * w + k] = d * f32(i32(byte >> 4u) - 8);
            }
        }
    } else if (QTYPE == T_Q8_0) {
        let d = packed_half(scale_base, b);
        for (var w = 0u; w < 8u; w++) {
            let word = bitcast<i32>(qword(row, k, w, rows));
            for (var k = 0u; k < 4u; k++) {
                v[4u * w + k] = d * f32(extractBits(word, 8u * k, 8u));
            }
        }
    } else if (QTYPE == T_F16) {
        for (var w = 0u; w < 16u; w++) {
            let word = qword(row, k, w, rows);
            v[2u * w] = f16_to_f32(word & 0xffffu);
            v[2u * w + 1u] = f16_to_f32(word >> 16u);
        }
    } else {
        for (var i = 0u; i < 32u; i++) {
            v[i] = bitcast<f32>(qword(row, k, i, rows));
        }
    }
    return v;
}
