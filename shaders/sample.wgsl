// Sampling on the GPU: the next token from the logits with every sampler
// setting, so only its id is read back. crate/src/sampler.rs is the
// reference, step for step: the penalties of the seen tokens; the most likely
// token where the choice is greedy; otherwise the candidates ranked by logit
// (ties: lower id first), cut by top-k, min-p and top-p, and walked in rank
// order until the host's uniform draw `u` (from the seeded generator) times
// their mass is used up.
//
// One workgroup, in five steps:
//   1. the penalties, applied to the seen tokens' logits in place;
//   2. the largest logit, lowest index on ties (the greedy choice);
//   3. Σ exp(s - s_max) over every token (s = logit / temperature), and a
//      histogram of s_max - s in buckets of 1/8;
//   4. the tokens of as many of the first buckets as hold at most CAP of
//      them: those are exactly the first ranks, as a bucket holds every
//      token of its range. They are gathered into workgroup memory and
//      sorted by rank (bitonic sort);
//   5. thread 0 cuts and walks them as the CPU does.
// Where the choice needs ranks past those (a flat distribution, a top-k
// longer than them, a draw that lands past them), out is FALLBACK: the host
// then reads the penalised logits and chooses on the CPU, from the same draw.
//
// Bindings (group 0):
//   0 params  uniform Params
//   1 logits  n f32, penalised in place
//   2 seen    n_seen (token, count), distinct tokens (sampler::seen_counts)
//   3 out     1 u32: the token, FALLBACK, or NONE where no logit is a
//             finite maximum (NaN: the host reports garbage)
// Dispatch: one workgroup.

struct Params {
    n: u32,
    n_seen: u32,
    top_k: u32,
    _pad0: u32,
    temperature: f32,
    top_p: f32,
    min_p: f32,
    u: f32,
    repetition: f32,
    presence: f32,
    frequency: f32,
    _pad1: f32,
}

const WG: u32 = 256u;
// Ranks held in workgroup memory (8 KiB of logits and ids).
const CAP: u32 = 1024u;
const BUCKETS: u32 = 256u; // = WG: each thread clears one
const BUCKETS_PER_UNIT: f32 = 8.0;
const FALLBACK: u32 = 0xfffffffeu;
const NONE: u32 = 0xffffffffu;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> logits: array<f32>;
@group(0) @binding(2) var<storage, read> seen: array<vec2<u32>>;
@group(0) @binding(3) var<storage, read_write> out: array<u32>;

var<workgroup> hist: array<atomic<u32>, BUCKETS>;
var<workgroup> gathered: atomic<u32>;
// The gathered candidates: their logits, then (step 5) their weights exp(s - s_max).
var<workgroup> cand_value: array<f32, CAP>;
var<workgroup> cand_id: array<u32, CAP>;
var<workgroup> red_value: array<f32, WG>;
var<workgroup> red_index: array<u32, WG>;
// Values thread 0 hands to every thread (through workgroupUniformLoad).
var<workgroup> shared_top: u32;
var<workgroup> shared_limit: i32;
var<workgroup> shared_count: u32;

// Whether (logit a, id ia) ranks before (b, ib).
fn ranks_before(a: f32, ia: u32, b: f32, ib: u32) -> bool {
    return a > b || (a == b && ia < ib);
}

// The histogram bucket of a token `d` = s_max - s below the most likely one.
fn bucket(d: f32) -> u32 {
    return min(u32(clamp(d * BUCKETS_PER_UNIT, 0.0, f32(BUCKETS - 1u))), BUCKETS - 1u);
}

// s_max - s of the logit l, given s_max (`top`).
fn below_top(l: f32, top: f32) -> f32 {
    return top - l / params.temperature;
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32) {
    let n = params.n;
    // 1. Penalties (as Sampler::penalize).
    for (var j = lid; j < params.n_seen; j += WG) {
        let e = seen[j];
        if (e.x < n) {
            var l = logits[e.x];
            if (params.repetition != 1.0) {
                l = select(l * params.repetition, l / params.repetition, l > 0.0);
            }
            logits[e.x] = l - (params.presence + params.frequency * f32(e.y));
        }
    }
    storageBarrier();

    // 2. The largest logit (as shaders/argmax.wgsl).
    var value = -3.4e38;
    var index = NONE;
    for (var i = lid; i < n; i += WG) {
        let l = logits[i];
        if (l > value) {
            value = l;
            index = i;
        }
    }
    red_value[lid] = value;
    red_index[lid] = index;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) {
            let v = red_value[lid + stride];
            let j = red_index[lid + stride];
            if (v > red_value[lid] || (v == red_value[lid] && j < red_index[lid])) {
                red_value[lid] = v;
                red_index[lid] = j;
            }
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        shared_top = red_index[0];
    }
    let top_id = workgroupUniformLoad(&shared_top);
    if (top_id == NONE || params.temperature == 0.0 || params.top_k == 1u) {
        if (lid == 0u) {
            out[0] = top_id;
        }
        return;
    }
    let top = red_value[0] / params.temperature;

    // 3. Σ exp(s - s_max) and the histogram.
    atomicStore(&hist[lid], 0u);
    if (lid == 0u) {
        atomicStore(&gathered, 0u);
    }
    workgroupBarrier();
    var total = 0.0;
    for (var i = lid; i < n; i += WG) {
        let d = below_top(logits[i], top);
        total += exp(-d);
        atomicAdd(&hist[bucket(d)], 1u);
    }
    red_value[lid] = total;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) {
            red_value[lid] += red_value[lid + stride];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        // The last bucket up to which they hold at most CAP tokens (-1: none).
        var held = 0u;
        var limit = -1;
        for (var b = 0u; b < BUCKETS; b++) {
            held += atomicLoad(&hist[b]);
            if (held > CAP) {
                break;
            }
            limit = i32(b);
        }
        shared_limit = limit;
    }
    let limit = workgroupUniformLoad(&shared_limit);
    let total_all = red_value[0];
    if (limit < 0) {
        if (lid == 0u) {
            out[0] = FALLBACK;
        }
        return;
    }

    // 4. Gather the tokens of buckets 0..=limit and sort them by rank.
    for (var i = lid; i < n; i += WG) {
        let l = logits[i];
        if (i32(bucket(below_top(l, top))) <= limit) {
            let slot = atomicAdd(&gathered, 1u);
            if (slot < CAP) {
                cand_value[slot] = l;
                cand_id[slot] = i;
            }
        }
    }
    workgroupBarrier();
    if (lid == 0u) {
        shared_count = atomicLoad(&gathered);
    }
    let count = workgroupUniformLoad(&shared_count);
    if (count > CAP || count == 0u) { // only if the two passes bucketed differently
        if (lid == 0u) {
            out[0] = FALLBACK;
        }
        return;
    }
    var size = 1u;
    while (size < count) {
        size *= 2u;
    }
    for (var i = count + lid; i < size; i += WG) {
        cand_value[i] = -3.4e38;
        cand_id[i] = NONE;
    }
    workgroupBarrier();
    for (var k = 2u; k <= size; k *= 2u) {
        for (var j = k / 2u; j > 0u; j /= 2u) {
            for (var i = lid; i < size; i += WG) {
                let partner = i ^ j;
                if (partner > i) {
                    // Blocks with (i & k) == 0 go in rank order, the others reversed.
                    let in_order = ranks_before(cand_value[i], cand_id[i], cand_value[partner], cand_id[partner]);
                    if (in_order != ((i & k) == 0u)) {
                        let v = cand_value[i];
                        cand_value[i] = cand_value[partner];
                        cand_value[partner] = v;
                        let id = cand_id[i];
                        cand_id[i] = cand_id[partner];
                        cand_id[partner] = id;
                    }
                }
            }
            workgroupBarrier();
        }
    }
    for (var i = lid; i < count; i += WG) {
        cand_value[i] = exp(-below_top(cand_value[i], top));
    }
    workgroupBarrier();

    // 5. The cut and the walk.
    if (lid == 0u) {
        out[0] = choose(count, limit, total_all);
    }
}

// Sampler::choose over the `count` first ranks held, weights exp(s - s_max)
// in cand_value; every other token has s_max - s ≥ (limit + 1) / 8, and all
// of them together the weight total_all. FALLBACK where that is not enough.
fn choose(count: u32, limit: i32, total_all: f32) -> u32 {
    let n = params.n;
    var cands = n;
    if (params.top_k > 0u && params.top_k < n) {
        cands = params.top_k;
    }
    // The candidates' weight: the first top_k's, or everyone's.
    var total = total_all;
    if (cands < n) {
        if (cands > count) {
            return FALLBACK;
        }
        total = 0.0;
        for (var i = 0u; i < cands; i++) {
            total += cand_value[i];
        }
    }
    let known = min(cands, count);
    var keep = cands;
    if (params.min_p > 0.0) {
        let threshold = params.min_p * cand_value[0];
        var i = 0u;
        while (i < known && cand_value[i] >= threshold) {
            i++;
        }
        if (i < known) {
            keep = max(i, 1u);
        } else if (known < cands) {
            // Past the held ranks every weight is at most exp(-(limit + 1) / 8).
            if (exp(-f32(limit + 1) / BUCKETS_PER_UNIT) < threshold) {
                keep = known;
            } else {
                return FALLBACK;
            }
        }
    }
    if (params.top_p < 1.0) {
        var mass = 0.0;
        var reach = NONE;
        for (var i = 0u; i < min(keep, known); i++) {
            mass += cand_value[i] / total;
            if (mass >= params.top_p) {
                reach = i;
                break;
            }
        }
        if (reach != NONE) {
            keep = min(keep, reach + 1u);
        } else if (keep > known) {
            return FALLBACK;
        }
    }
    // Every candidate kept (keep > known: none cut, so cands = n): their mass is 1.
    var kept_mass = 1.0;
    if (keep <= known) {
        kept_mass = 0.0;
        for (var i = 0u; i < keep; i++) {
            kept_mass += cand_value[i] / total;
        }
    }
    var r = params.u * kept_mass;
    for (var i = 0u; i < min(keep, known); i++) {
        let p = cand_value[i] / total;
        if (r < p) {
            return cand_id[i];
        }
        r -= p;
    }
    if (keep <= known) {
        return cand_id[keep - 1u];
    }
    return FALLBACK;
}
