// The kernel of attention_cpu.wgsl with subgroups of at least WG = 8 lanes
// (llvmpipe, where every load, of storage or of workgroup memory, is a
// loop over the lanes, and a subgroup operation a few register moves): keys
// in batches of 8 with an online softmax, no barrier and no workgroup
// memory. Per batch:
//   1. lane j scores key s0 + j, the query shared in the subgroup: for each
//      eight vec4s of it the eight lanes load one each and subgroupBroadcast
//      hands them to all;
//   2. the batch's maximum and sum by subgroupMax and subgroupAdd;
//   3. each lane sums the eight weighted value rows for dimensions (vec4s)
//      lane, lane + 8, ..., the weights broadcast from their lanes.
// (subgroupBroadcast takes constant lanes only, hence the unrolled eights.)

// The query (vec4 q_off) dotted with the key row at vec4 `row`.
fn q_dot_key(hd4: u32, q_off: u32, row: u32, lane: u32) -> f32 {
    var dot4 = vec4<f32>(0.0);
    let broadcast = hd4 / 8u * 8u;
    for (var d = 0u; d < broadcast; d += 8u) {
        let v = q[q_off + d + lane];
        dot4 += subgroupBroadcast(v, 0u) * key(row + d) + subgroupBroadcast(v, 1u) * key(row + d + 1u)
              + subgroupBroadcast(v, 2u) * key(row + d + 2u) + subgroupBroadcast(v, 3u) * key(row + d + 3u)
              + subgroupBroadcast(v, 4u) * key(row + d + 4u) + subgroupBroadcast(v, 5u) * key(row + d + 5u)
              + subgroupBroadcast(v, 6u) * key(row + d + 6u) + subgroupBroadcast(v, 7u) * key(row + d + 7u);
    }
    for (var d = broadcast; d < hd4; d++) {
        dot4 += q[q_off + d] * key(row + d);
    }
    return dot(dot4, vec4<f32>(1.0));
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
    let h = head_at(wg.x, wg.y);
    let last = h.n_keys - 1u;
    let dims = (h.hd4 + WG - 1u) / WG; // vec4s per lane
    var running_max = -3.0e38;
    var denom = 0.0;
    var acc: array<vec4<f32>, MAX_HD4 / WG>;
    for (var s0 = 0u; s0 <= last; s0 += WG) {
        // Lanes past the last key score it again, with a weight of 0.
        let row = min(s0 + lane, last) * h.kv_stride + h.kv_off;
        let score = select(-3.0e38, q_dot_key(h.hd4, h.q_off, row, lane) * shape.scale, s0 + lane <= last);
        let new_max = max(running_max, subgroupMax(score));
        let p = exp(score - new_max);
        let correction = exp(running_max - new_max);
        denom = denom * correction + subgroupAdd(p);
        running_max = new_max;
        let p0 = subgroupBroadcast(p, 0u);
        let p1 = subgroupBroadcast(p, 1u);
        let p2 = subgroupBroadcast(p, 2u);
        let p3 = subgroupBroadcast(p, 3u);
        let p4 = subgroupBroadcast(p, 4u);
        let p5 = subgroupBroadcast(p, 5u);
        let p6 = subgroupBroadcast(p, 6u);
        let p7 = subgroupBroadcast(p, 7u);
        // The batch's value rows (past the last key: the last, weighted 0).
        let r0 = s0 * h.kv_stride + h.kv_off;
        let r1 = min(s0 + 1u, last) * h.kv_stride + h.kv_off;
        let r2 = min(s0 + 2u, last) * h.kv_stride + h.kv_off;
        let r3 = min(s0 + 3u, last) * h.kv_stride + h.kv_off;
        let r4 = min(s0 + 4u, last) * h.kv_stride + h.kv_off;
        let r5 = min(s0 + 5u, last) * h.kv_stride + h.kv_off;
        let r6 = min(s0 + 6u, last) * h.kv_stride + h.kv_off;
        let r7 = min(s0 + 7u, last) * h.kv_stride + h.kv_off;
        for (var j = 0u; j < dims; j++) {
            let d = min(j * WG + lane, h.hd4 - 1u);
            acc[j] = acc[j] * correction + p0 * value(r0 + d) + p1 * value(r1 + d) + p2 * value(r2 + d) + p3 * value(r3 + d)
                   + p4 * value(r4 + d) + p5 * value(r5 + d) + p6 * value(r6 + d) + p7 * value(r7 + d);
        }
    }
    for (var j = 0u; j < dims; j++) {
        let d = j * WG + lane;
        if (d < h.hd4) {
            out[h.q_off + d] = acc[j] / denom;
        }
    }
}
