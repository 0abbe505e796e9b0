"""The table of bench/gpu-peer.sh: hearth's figures on the GPU against
llama.cpp's best (with or without flash attention) on the same GPU.
Usage: python3 bench/gpu_report.py RESULTS_DIR LLAMA_BACKEND"""
import json
import sys
from pathlib import Path

results, backend = Path(sys.argv[1]), sys.argv[2]
adapter = json.loads((results / "adapter.json").read_text())
hearth = [json.loads(line) for line in (results / "hearth.jsonl").read_text().splitlines() if line.strip()]
llama = json.loads((results / "llama.json").read_text())


def llama_best(n_prompt, n_gen):
    """llama.cpp's fastest tok/s over its flash-attention settings, and which."""
    runs = [r for r in llama if r["n_prompt"] == n_prompt and r["n_gen"] == n_gen]
    best = max(runs, key=lambda r: r["avg_ts"])
    return best["avg_ts"], bool(best["flash_attn"])


by_prompt = {h["prompt_tokens"]: h for h in hearth}
pp = {p: llama_best(p, 0) for p in by_prompt}
tg, tg_fa = llama_best(0, 128)
print(f"GPU: {adapter['name']} ({adapter['backend']}, driver {adapter.get('driver_info', '')}); "
      f"llama.cpp {backend}, all layers on the GPU")
print()
print("| | prefill 128 | prefill 512 | decode (after 128) | decode (after 512) |")
print("|---|---|---|---|---|")
h128, h512 = by_prompt[128], by_prompt[512]
print(f"| hearth (wgpu) | {h128['prefill_tok_s']:.0f} | {h512['prefill_tok_s']:.0f} | "
      f"{h128['decode_tok_s']:.0f} | {h512['decode_tok_s']:.0f} |")
print(f"| llama.cpp {backend} (tg128 from an empty cache{', flash attention' if tg_fa else ''}) | "
      f"{pp[128][0]:.0f} | {pp[512][0]:.0f} | {tg:.0f} | {tg:.0f} |")
print(f"| ratio hearth / llama.cpp | {h128['prefill_tok_s'] / pp[128][0]:.2f}x | "
      f"{h512['prefill_tok_s'] / pp[512][0]:.2f}x | {h128['decode_tok_s'] / tg:.2f}x | {h512['decode_tok_s'] / tg:.2f}x |")
print()
print(f"hearth: load {h128['load_ms']:.0f} ms, time to first token {h128['ttft_ms']:.1f} ms (128-token prompt), "
      f"GPU memory {h128['gpu_bytes'] / 2**20:.1f} MiB, read bandwidth {h128['read_gbs']:.0f} GB/s, "
      f"roofline fraction {h128['roofline_fraction']:.3f} / {h512['roofline_fraction']:.3f}")

variants_file = results / "variants.jsonl"
if variants_file.exists():
    rows = [json.loads(line) for line in variants_file.read_text().splitlines() if line.strip()]
    print()
    print("hearth with each GPU-only choice turned off (one run each, 64 generated tokens):")
    print()
    print("| variant | prefill 128 | prefill 512 | decode (after 128) | decode (after 512) |")
    print("|---|---|---|---|---|")
    for variant in dict.fromkeys(r["variant"] for r in rows):
        got = {r["prompt_tokens"]: r for r in rows if r["variant"] == variant}
        print(f"| {variant} | {got[128]['prefill_tok_s']:.0f} | {got[512]['prefill_tok_s']:.0f} | "
              f"{got[128]['decode_tok_s']:.0f} | {got[512]['decode_tok_s']:.0f} |")
