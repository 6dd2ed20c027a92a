#!/usr/bin/env python3
"""Writes a benchmark disk image of mixed content: a third zeros, a third text, a third random,
interleaved in 64 MiB stretches the way a used disk looks. Deterministic for a given size."""
import os
import random
import sys

path, size = sys.argv[1], int(sys.argv[2])
stretch = 64 << 20
rng = random.Random(42)
words = ["".join(rng.choice("etaoinshrdlucmfwypvbgkqjxz") for _ in range(rng.randint(2, 9))).encode() for _ in range(5000)]
text_block = b" ".join(rng.choice(words) for _ in range(300_000))[: 1 << 20]
with open(path, "wb") as f:
    written, i = 0, 0
    while written < size:
        n = min(stretch, size - written)
        kind = i % 3
        if kind == 0:
            f.seek(n, os.SEEK_CUR)  # zeros (sparse)
        elif kind == 1:
            for off in range(0, n, len(text_block)):
                f.write(text_block[: min(len(text_block), n - off)])
        else:
            f.write(os.urandom(n))
        written += n
        i += 1
    f.truncate(size)
