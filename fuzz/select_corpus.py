#!/usr/bin/env python3
"""Picks the inputs of a fuzz corpus worth committing.

    select_corpus.py CONTROL_FILE KEEP OUT_DIR

CONTROL_FILE is the merge control file libFuzzer writes with
`-merge=1 -merge_control_file=FILE` (its first lines name every input, then
one `FT <input> <features...>` line per input run). The inputs are chosen
greedily, each time the one adding the most features not yet covered (the
smaller on a tie), until KEEP are chosen or nothing new is left; they are
copied into OUT_DIR (emptied first) under their own names.
"""
import os
import shutil
import sys


def main():
    control, keep, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    with open(control) as f:
        lines = f.read().splitlines()
    n = int(lines[0])
    paths = lines[2 : 2 + n]
    features = {}
    for line in lines[2 + n :]:
        if line.startswith("FT "):
            parts = line.split()
            features[int(parts[1])] = set(parts[2:])
    size = {i: os.path.getsize(paths[i]) for i in features}
    covered, chosen = set(), []
    while len(chosen) < keep:
        best = max(features, key=lambda i: (len(features[i] - covered), -size[i]), default=None)
        if best is None or not features[best] - covered:
            break
        chosen.append(best)
        covered |= features.pop(best)
    total = set().union(covered, *features.values())
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    for i in chosen:
        shutil.copy(paths[i], os.path.join(out, os.path.basename(paths[i])))
    print(f"kept {len(chosen)} of {n} inputs: {len(covered)} of {len(total)} features")


if __name__ == "__main__":
    main()
