// The per-forward uniform shared by every kernel (prepended to each):
// `tokens` rows are processed, the first at sequence position `pos0`;
// `row0` is the first row read from row-indexed inputs (the final norm reads
// only the last token's row).
//
// Before it, the kernel table (crate/src/gpu/kernels.rs) declares `kv`, the
// KV cache's element type: f16 where the device has shader-f16
// (`Variants::f16_kv_cache`), else f32.
struct Step {
    tokens: u32,
    pos0: u32,
    row0: u32,
    _pad: u32,
}
