// A prompt chunk's causal attention in tiles of 8 queries, for llvmpipe
// (subgroups of at least 8 lanes): the same sums as attention_cpu.wgsl,
// but a workgroup holds 8 neighbouring tokens of one head, lane i the
// query of token 8 wg.y + i, so each key and value row is loaded once for
// the 8 queries instead of once per query. On llvmpipe every lane's
// storage load is a loop over the lanes with a bounds check per component,
// a prompt's attention was mostly those loads (half of a 512-token prefill),
// and a subgroup broadcast is a register extract.
//
// Per batch of 8 keys (the same for all lanes):
//   1. each key row is loaded a vec4 per lane and broadcast to all; each
//      lane dots it with its own query (held in registers: HD4 is a
//      pipeline constant, so the loops unroll and the arrays below are
//      indexed by constants only), and leaves out keys after its token;
//   2. each lane's online softmax (its maximum and denominator) takes the
//      batch's 8 scores at once;
//   3. each value row is loaded and broadcast the same way, and each lane
//      adds it, weighted, to its own output row.
// Lanes past the chunk's last token repeat that token and write nothing.
//
// (Bindings: attention_io.wgsl. Dispatch: (heads, ceil(tokens / 8)).)

const TILE: u32 = 8u;
// head_dim / 4: a multiple of TILE (head_dim a multiple of 32), <= MAX_HD4.
override HD4: u32 = 16u;

// Vec4 c of eight loaded a vec4 per lane, from the lane that loaded it.
fn shared_vec4(v: vec4<f32>, c: u32) -> vec4<f32> {
    switch c {
        case 0u: { return subgroupBroadcast(v, 0u); }
        case 1u: { return subgroupBroadcast(v, 1u); }
        case 2u: { return subgroupBroadcast(v, 2u); }
        case 3u: { return subgroupBroadcast(v, 3u); }
        case 4u: { return subgroupBroadcast(v, 4u); }
        case 5u: { return subgroupBroadcast(v, 5u); }
        case 6u: { return subgroupBroadcast(v, 6u); }
        default: { return subgroupBroadcast(v, 7u); }
    }
}

@compute @workgroup_size(TILE)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
    let last_token = step.tokens - 1u;
    let token = wg.y * TILE + lane;
    let h = head_at(wg.x, min(token, last_token));
    // The tile's keys: up to its last token's position.
    let n_keys = step.pos0 + min(wg.y * TILE + TILE - 1u, last_token) + 1u;
    let own_last = h.n_keys - 1u;

    var query: array<vec4<f32>, MAX_HD4>;
    for (var d = 0u; d < HD4; d++) {
        query[d] = q[h.q_off + d];
    }
    var acc: array<vec4<f32>, MAX_HD4>;
    var running_max = -3.0e38;
    var denom = 0.0;
    for (var s0 = 0u; s0 < n_keys; s0 += TILE) {
        var scores: array<f32, TILE>;
        var batch_max = running_max;
        for (var j = 0u; j < TILE; j++) {
            // Past the tile's last key: that key again, left out below.
            let row = min(s0 + j, n_keys - 1u) * h.kv_stride + h.kv_off;
            var dot4 = vec4<f32>(0.0);
            for (var d0 = 0u; d0 < HD4; d0 += TILE) {
                let k = key(row + d0 + lane);
                for (var c = 0u; c < TILE; c++) {
                    dot4 += query[d0 + c] * shared_vec4(k, c);
                }
            }
            scores[j] = select(-3.0e38, dot(dot4, vec4<f32>(1.0)) * shape.scale, s0 + j <= own_last);
            batch_max = max(batch_max, scores[j]);
        }
        let correction = exp(running_max - batch_max);
        running_max = batch_max;
        var weights: array<f32, TILE>;
        var sum = 0.0;
        for (var j = 0u; j < TILE; j++) {
            weights[j] = exp(scores[j] - batch_max);
            sum += weights[j];
        }
        denom = denom * correction + sum;
        for (var d = 0u; d < HD4; d++) {
            acc[d] *= correction;
        }
        for (var j = 0u; j < TILE; j++) {
            let row = min(s0 + j, n_keys - 1u) * h.kv_stride + h.kv_off;
            for (var d0 = 0u; d0 < HD4; d0 += TILE) {
                let v = value(row + d0 + lane);
                for (var c = 0u; c < TILE; c++) {
                    acc[d0 + c] += weights[j] * shared_vec4(v, c);
                }
            }
        }
    }
    if (token <= last_token) {
        for (var d = 0u; d < HD4; d++) {
            out[h.q_off + d] = acc[d] / denom;
        }
    }
}
