// The kernel of attention_cpu.wgsl for adapters without subgroups
// (SwiftShader): keys in batches of up to CHUNK, with an online softmax
// between batches. Per batch:
//   1. thread i scores keys i, i + WG, ... against the query (held in
//      workgroup memory) and keeps the scores in `probs`;
//   2. the batch's maximum, then each thread turns its scores into weights;
//   3. thread i sums the weighted value rows of the batch for dimensions
//      (vec4s) i, i + WG, ..., four keys per pass of its loop (a quarter of
//      the passes: SwiftShader's attention 17 % faster at 512 keys).
// Three barriers per batch and one for the query: four in all for up to
// CHUNK keys.

// Keys per batch (128 and 512 were no faster on SwiftShader).
const CHUNK: u32 = 256u;

var<workgroup> q_tile: array<vec4<f32>, MAX_HD4>;
var<workgroup> probs: array<f32, CHUNK>;
var<workgroup> maxima: array<f32, WG>;
var<workgroup> sums: array<f32, WG>;
// The weighted sums of values so far, each vec4 one thread's.
var<workgroup> acc: array<vec4<f32>, MAX_HD4>;

// The query dotted with the key row at vec4 `row`.
fn q_dot_key(hd4: u32, row: u32) -> f32 {
    var dot4 = vec4<f32>(0.0);
    for (var d = 0u; d < hd4; d++) {
        dot4 += q_tile[d] * key(row + d);
    }
    return dot(dot4, vec4<f32>(1.0));
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = head_at(wg.x, wg.y);
    for (var d = lid; d < h.hd4; d += WG) {
        q_tile[d] = q[h.q_off + d];
    }
    workgroupBarrier();

    var running_max = -3.0e38; // the same in every thread
    var denom = 0.0;
    for (var c0 = 0u; c0 < h.n_keys; c0 += CHUNK) {
        let len = min(CHUNK, h.n_keys - c0);
        var my_max = -3.0e38;
        for (var i = lid; i < len; i += WG) {
            let score = q_dot_key(h.hd4, (c0 + i) * h.kv_stride + h.kv_off) * shape.scale;
            probs[i] = score;
            my_max = max(my_max, score);
        }
        maxima[lid] = my_max;
        workgroupBarrier();
        var new_max = running_max;
        for (var j = 0u; j < WG; j++) {
            new_max = max(new_max, maxima[j]);
        }
        var my_sum = 0.0;
        for (var i = lid; i < len; i += WG) {
            let p = exp(probs[i] - new_max);
            probs[i] = p;
            my_sum += p;
        }
        sums[lid] = my_sum;
        let correction = exp(running_max - new_max);
        running_max = new_max;
        workgroupBarrier();
        var batch_sum = 0.0;
        for (var j = 0u; j < WG; j++) {
            batch_sum += sums[j];
        }
        denom = denom * correction + batch_sum;
        // Every thread runs the same passes (d0 is uniform, so the loads of
        // `probs` are too); one past the last dimension redoes the last and
        // keeps nothing.
        for (var d0 = 0u; d0 < h.hd4; d0 += WG) {
            let d = min(d0 + lid, h.hd4 - 1u);
            var a = select(vec4<f32>(0.0), acc[d] * correction, c0 > 0u);
            let stride = h.kv_stride;
            var row = c0 * stride + h.kv_off + d;
            var i = 0u;
            for (; i + 4u <= len; i += 4u) {
                a += probs[i] * value(row) + probs[i + 1u] * value(row + stride)
                   + probs[i + 2u] * value(row + 2u * stride) + probs[i + 3u] * value(row + 3u * stride);
                row += 4u * stride;
            }
            for (; i < len; i++) {
                a += probs[i] * value(row);
                row += stride;
            }
            if (d0 + lid < h.hd4) {
                acc[d] = a;
            }
        }
        workgroupBarrier(); // probs, maxima and sums are overwritten next batch
    }
    for (var d = lid; d < h.hd4; d += WG) {
        out[h.q_off + d] = acc[d] / denom;
    }
}
