// Causal attention over the KV cache with grouped-query heads:
// out[t, h] = softmax_s(q[t, h] · k[s, g] / sqrt(head_dim)) · v[s, g] over
// s = 0 ..= pos0 + t, where g = h / (heads / kv_heads). One pass over the
// keys with a running maximum (online softmax), WG keys at a time: each
// thread scores one key (reading it 16 bytes at a time) and turns its score
// into a weight; then the threads sum the weighted value rows, thread i
// holding dimensions 4 (i % hd4) .. + 3 (hd4 = head_dim / 4) of every
// (WG / hd4)-th key, and the partial sums are added up at the end.
// Everything is read as vec4 (head_dim is a multiple of 4): CPU-based
// adapters emulate loads lane by lane, so wide loads count there.
//
// Bindings and dispatch: attention_io.wgsl; here head_dim <= 4 * WG too.
//
// Split keys (flash-decoding): a dispatch with z > 1 (one token: a decode
// step, where (heads, 1) workgroups alone would leave a GPU nearly idle
// and each walk all the keys in turn) splits each head's keys into z runs,
// one per workgroup, which leaves its running maximum, its softmax
// denominator and its unnormalised weighted sum of values in `parts`
// (shaders/attention_combine.wgsl then adds the runs up). With z = 1 the
// workgroup writes `out` itself.

override WG: u32 = 64u;

// Per (token, head, run): a vec4 (max, denominator, 0, 0), then hd4 vec4s of sums.
@group(0) @binding(6) var<storage, read_write> parts: array<vec4<f32>>;

var<workgroup> q_tile: array<vec4<f32>, MAX_HD4>;
// A chunk's scores and weights, four keys a vec4 (fewer loads when every
// thread runs through all of them); keys past the last have score -3e38 and
// weight 0, so the loops need no bounds.
var<workgroup> scores: array<vec4<f32>, WG / 4u>;
var<workgroup> weights: array<vec4<f32>, WG / 4u>;
var<workgroup> partial: array<vec4<f32>, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) grid: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let h = head_at(wg.x, wg.y);
    let hd4 = h.hd4;
    let kv_stride = h.kv_stride;
    let kv_off = h.kv_off;
    let q_off = h.q_off;
    // This workgroup's run of keys: first .. end - 1 (maybe none).
    let per_run = (h.n_keys + grid.z - 1u) / grid.z;
    let first = min(wg.z * per_run, h.n_keys);
    let end = min(first + per_run, h.n_keys);

    for (var d = lid; d < hd4; d += WG) {
        q_tile[d] = q[q_off + d];
    }
    workgroupBarrier();

    // This thread's share of the weighted sum of values: dimensions
    // 4 dim4 .. 4 dim4 + 3 of keys s0 + group, s0 + group + groups, ...
    let groups = WG / hd4;
    let group = lid / hd4;
    let dim4 = lid % hd4;
    var running_max = -3.0e38;
    var denom = 0.0;
    var acc = vec4<f32>(0.0);
    for (var s0 = first; s0 < end; s0 += WG) {
        let s = s0 + lid;
        var score = -3.0e38;
        if (s < end) {
            let k_row = s * kv_stride + kv_off;
            var dot4 = vec4<f32>(0.0);
            for (var d = 0u; d < hd4; d++) {
                dot4 += q_tile[d] * key(k_row + d);
            }
            score = dot(dot4, vec4<f32>(1.0)) * shape.scale;
        }
        scores[lid / 4u][lid % 4u] = score;
        workgroupBarrier();

        var max4 = vec4<f32>(running_max);
        for (var j = 0u; j < WG / 4u; j++) {
            max4 = max(max4, scores[j]);
        }
        let chunk_max = max(max(max4.x, max4.y), max(max4.z, max4.w));
        weights[lid / 4u][lid % 4u] = select(0.0, exp(score - chunk_max), s < end);
        workgroupBarrier();

        let correction = exp(running_max - chunk_max);
        var sum4 = vec4<f32>(0.0);
        for (var j = 0u; j < WG / 4u; j++) {
            sum4 += weights[j];
        }
        denom = denom * correction + dot(sum4, vec4<f32>(1.0));
        let count = min(WG, end - s0);
        var chunk_acc = vec4<f32>(0.0);
        if (group < groups) {
            for (var j = group; j < count; j += groups) {
                chunk_acc += weights[j / 4u][j % 4u] * value((s0 + j) * kv_stride + kv_off + dim4);
            }
        }
        acc = acc * correction + chunk_acc;
        running_max = chunk_max;
        workgroupBarrier(); // scores and weights are overwritten next round
    }
    partial[lid] = acc;
    workgroupBarrier();
    if (lid < hd4) {
        var sum = vec4<f32>(0.0);
        for (var g = 0u; g < groups; g++) {
            sum += partial[g * hd4 + lid];
        }
        if (grid.z == 1u) {
            out[q_off + lid] = sum / denom;
        } else {
            let run = (q_off / hd4 * grid.z + wg.z) * (hd4 + 1u);
            parts[run + 1u + lid] = sum;
            if (lid == 0u) {
                parts[run] = vec4<f32>(running_max, denom, 0.0, 0.0);
            }
        }
    }
}
