// Causal attention over the KV cache with grouped-query heads, for CPU-based
// adapters (lavapipe, SwiftShader):
// out[t, h] = softmax_s(q[t, h] · k[s, g] / sqrt(head_dim)) · v[s, g] over
// s = 0 ..= pos0 + t, where g = h / (heads / kv_heads).
//
// A workgroup of WG threads per (head, token). For a batch of keys, each
// thread scores keys of its own (a whole key row, read 16 bytes at a time,
// with no barrier in the dot product); then the threads split the head's
// dimensions, and each sums the weighted value rows of the whole batch for
// its dimensions, so every value is read once and each running sum stays
// with one thread. A CPU adapter emulates its lanes: each lane's load is a
// scalar load, a barrier suspends the lanes, and a thread's array indexed
// by a loop variable lives in memory. This file holds what the two
// variants share; the kernel itself comes after it:
//   attention_cpu_subgroup.wgsl: batches of 8 keys, their scores' maximum,
//     sum and weights shared by subgroup operations (llvmpipe);
//   attention_cpu_workgroup.wgsl: batches of up to 256 keys, their weights
//     in workgroup memory (SwiftShader, and adapters without subgroups).
// A GPU uses attention.wgsl.
//
// (Bindings and dispatch: attention_io.wgsl.)

// Threads per (head, token): one lavapipe SIMD batch (and subgroup), two of
// SwiftShader's (16 made SwiftShader's decode slower, as more batches meet
// at each barrier; 4 was no faster).
const WG: u32 = 8u;
