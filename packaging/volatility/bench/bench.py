"""Read throughput of the seekable layer against Volatility's FileLayer on the decompressed file.

    python bench.py IMAGE IMAGE.zst

IMAGE.zst is IMAGE compressed by airf-agent. Each pattern is timed on both layers, with the OS
page cache warm for both files (each is read once first), so the difference is the layer's
work: finding frames and decompressing them. Run by packaging/volatility/bench/bench.sh.
"""

import pathlib
import random
import sys
import time

import volatility3.plugins
from volatility3.framework import contexts
from volatility3.framework.configuration import requirements
from volatility3.framework.layers import physical

LAYER_DIR = str(pathlib.Path(__file__).resolve().parent.parent)
if LAYER_DIR not in volatility3.plugins.__path__:
    volatility3.plugins.__path__.insert(0, LAYER_DIR)
from volatility3.plugins import zstd_seekable  # noqa: E402  (needs the path above)

MIB = 1 << 20
PAGE = 4096


def file_layer(ctx, name, path):
    ctx.config[f"{name}.location"] = requirements.URIRequirement.location_from_file(path)
    layer = physical.FileLayer(ctx, name, name)
    ctx.add_layer(layer)
    return layer


def layers(raw, zst):
    """A FileLayer over the raw image and a fresh seekable layer (empty cache) over the zst."""
    ctx = contexts.Context()
    plain = file_layer(ctx, "raw", raw)
    file_layer(ctx, "zst", zst)
    ctx.config["seekable.base_layer"] = "zst"
    seekable = zstd_seekable.ZstdSeekableLayer(ctx, "seekable", "seekable")
    return plain, seekable


def sequential(layer, chunk, limit):
    for offset in range(0, limit, chunk):
        layer.read(offset, min(chunk, limit - offset))
    return limit


def random_pages(layer, offsets):
    for offset in offsets:
        layer.read(offset, PAGE)
    return len(offsets) * PAGE


def main():
    raw, zst = sys.argv[1], sys.argv[2]
    for path in (raw, zst):  # warm the page cache for both
        with open(path, "rb") as f:
            while f.read(16 * MIB):
                pass
    plain, seekable = layers(raw, zst)
    size = plain.maximum_address + 1
    frame = seekable._sizes[0]
    stored = seekable.context.layers["zst"].maximum_address + 1
    rng = random.Random(1)
    anywhere = [rng.randrange(size // PAGE) * PAGE for _ in range(2000)]
    window = 32 * MIB  # within the 64 MiB cache once it is warm
    nearby = [rng.randrange(window // PAGE) * PAGE for _ in range(20000)]
    patterns = [
        ("sequential, 1 MiB reads, whole image", lambda layer: sequential(layer, MIB, size)),
        (
            "sequential, 4 KiB reads, first 128 MiB",
            lambda layer: sequential(layer, PAGE, min(128 * MIB, size)),
        ),
        ("random 4 KiB pages anywhere (2000)", lambda layer: random_pages(layer, anywhere)),
        ("random 4 KiB pages within 32 MiB (20000)", lambda layer: random_pages(layer, nearby)),
    ]
    print(
        f"image {size / MIB:.0f} MiB, stored {stored / MIB:.0f} MiB, "
        f"{seekable.frame_count} frames of {frame // 1024} KiB"
    )
    print(f"{'pattern':44} {'decompressed file':>18} {'seekable .zst':>14}")
    for name, run in patterns:
        rates = []
        plain, seekable = layers(raw, zst)  # each pattern starts with an empty frame cache
        for layer in (plain, seekable):
            start = time.perf_counter()
            done = run(layer)
            rates.append(done / MIB / (time.perf_counter() - start))
        print(f"{name:44} {rates[0]:13.0f} MiB/s {rates[1]:9.0f} MiB/s")


if __name__ == "__main__":
    main()
