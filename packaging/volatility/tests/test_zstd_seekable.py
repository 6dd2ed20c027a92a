"""Tests of the zstd seekable layer against files the real agent wrote.

Run by tests/scripts/volatility-layer-check.sh, or by hand with Volatility's venv:

    AIRF_AGENT_BIN=target/debug/airf-agent /opt/airf-cache/volatility-venv/bin/python \\
        -m unittest discover -s packaging/volatility/tests -v

AIRF_AGENT_BIN is the airf-agent that compresses the fixtures (`airf-agent disk FILE --to -`,
the pipeline `memory` uses too); the `zstd` command decompresses them for the expected bytes.

Volatility imports every module under a `-p` directory, this one included: it has no side
effects beyond defining the tests, and it uses the layer module Volatility already imported.
"""

import os
import pathlib
import pickle
import random
import struct
import subprocess
import tempfile
import unittest

import volatility3.plugins
import zstandard
from volatility3.framework import contexts, exceptions
from volatility3.framework.automagic import stacker
from volatility3.framework.configuration import requirements
from volatility3.framework.layers import lime, physical

LAYER_DIR = str(pathlib.Path(__file__).resolve().parent.parent)
if LAYER_DIR not in volatility3.plugins.__path__:
    volatility3.plugins.__path__.insert(0, LAYER_DIR)
from volatility3.plugins import zstd_seekable  # noqa: E402  (needs the path above)

FRAME = 4096  # the agent's smallest frame: many frames from a small file


def sample(size: int, seed: int) -> bytes:
    """Memory-like bytes: zero pages, text and random pages, so frames differ in ratio."""
    rng = random.Random(seed)
    out = bytearray()
    while len(out) < size:
        kind = rng.randrange(3)
        if kind == 0:
            out += bytes(4096)
        elif kind == 1:
            out += (b"page %d of airf test data; " % len(out)) * 150
        else:
            out += rng.randbytes(4096)
    return bytes(out[:size])


def agent_compress(raw: pathlib.Path, out: pathlib.Path, frame_size: int) -> None:
    """Compresses `raw` into `out` with airf-agent, as it stores every image."""
    agent = os.environ.get("AIRF_AGENT_BIN")
    if not agent:
        raise RuntimeError("set AIRF_AGENT_BIN to an airf-agent binary (cargo build -p airf-agent)")
    with open(out, "wb") as stdout:
        subprocess.run(
            [
                agent,
                "disk",
                str(raw),
                "--to",
                "-",
                "--frame-size",
                str(frame_size),
                "--no-progress",
            ],
            stdout=stdout,
            stderr=subprocess.DEVNULL,
            check=True,
        )


def zstd_decompress(path: pathlib.Path) -> bytes:
    """What the zstd command makes of `path`: the expected bytes of the layer."""
    return subprocess.run(["zstd", "-dc", str(path)], capture_output=True, check=True).stdout


def open_file(ctx: contexts.Context, name: str, path: pathlib.Path) -> str:
    """Adds a FileLayer over `path` to `ctx`, as `vol -f` does, and returns its name."""
    ctx.config[f"{name}.location"] = requirements.URIRequirement.location_from_file(str(path))
    ctx.add_layer(physical.FileLayer(ctx, name, name))
    return name


def lime_image(ranges) -> bytes:
    """A LiME file: for each (physical start, bytes) a 32-byte header, then the bytes."""
    out = b""
    for start, data in ranges:
        out += struct.pack("<IIQQQ", 0x4C694D45, 1, start, start + len(data) - 1, 0) + data
    return out


class Fixtures(unittest.TestCase):
    """Builds the compressed files once for every test of a class."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="airf-vol-")
        cls.dir = pathlib.Path(cls.tmp.name)
        # Not a multiple of the frame size: the last frame is short.
        cls.raw = sample(300 * FRAME + 1234, seed=1)
        (cls.dir / "raw").write_bytes(cls.raw)
        cls.zst = cls.dir / "raw.zst"
        agent_compress(cls.dir / "raw", cls.zst, FRAME)
        cls.expected = zstd_decompress(cls.zst)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def context(self) -> contexts.Context:
        """A Volatility context whose files are closed after the test."""
        ctx = contexts.Context()
        self.addCleanup(lambda: [layer.destroy() for layer in ctx.layers.values()])
        return ctx

    def open_layer(self, path: pathlib.Path) -> zstd_seekable.ZstdSeekableLayer:
        """The seekable layer over the file at `path`."""
        ctx = self.context()
        open_file(ctx, "file", path)
        ctx.config["zs.base_layer"] = "file"
        layer = zstd_seekable.ZstdSeekableLayer(ctx, "zs", "zs")
        ctx.add_layer(layer)
        return layer

    def variant(self, name: str, data: bytes) -> pathlib.Path:
        path = self.dir / name
        path.write_bytes(data)
        return path


class RandomAccess(Fixtures):
    def test_the_agent_wrote_what_zstd_reads(self):
        # The expected bytes are zstd's, and they are the input: the fixture itself is sound.
        self.assertEqual(self.expected, self.raw)

    def test_size_and_frames_come_from_the_table(self):
        layer = self.open_layer(self.zst)
        self.assertEqual(layer.maximum_address, len(self.expected) - 1)
        self.assertEqual(layer.frame_count, -(-len(self.expected) // FRAME))

    def test_reads_at_frame_boundaries_match_zstd(self):
        layer = self.open_layer(self.zst)
        size = len(self.expected)
        cases = [(0, 1), (0, FRAME), (size - 1, 1), (0, size)]
        for boundary in (FRAME, 2 * FRAME, 150 * FRAME, 300 * FRAME):
            cases += [(boundary - 1, 1), (boundary, 1), (boundary - 1, 2), (boundary - 7, 7)]
        # Across two, three and a hundred frames; ending exactly at the end.
        cases += [
            (FRAME - 10, 20),
            (FRAME - 10, 2 * FRAME + 20),
            (5, 100 * FRAME),
            (size - 5000, 5000),
        ]
        for offset, length in cases:
            with self.subTest(offset=offset, length=length):
                self.assertEqual(
                    layer.read(offset, length), self.expected[offset : offset + length]
                )

    def test_random_reads_match_zstd(self):
        layer = self.open_layer(self.zst)
        rng = random.Random(7)
        size = len(self.expected)
        for _ in range(2000):
            offset = rng.randrange(size)
            length = rng.randint(1, min(3 * FRAME, size - offset))
            got = layer.read(offset, length)
            if got != self.expected[offset : offset + length]:
                self.fail(f"read({offset}, {length}) differs from zstd -d")

    def test_past_the_end_raises_or_pads(self):
        layer = self.open_layer(self.zst)
        size = len(self.expected)
        for offset, length in ((size, 1), (size - 1, 2), (size + 4096, 10), (-1, 2)):
            with self.subTest(offset=offset, length=length):
                self.assertFalse(layer.is_valid(offset, length))
                with self.assertRaises(exceptions.InvalidAddressException):
                    layer.read(offset, length)
        # With pad, the part outside is zeros and the part inside is the image.
        self.assertEqual(layer.read(size - 3, 8, pad=True), self.expected[-3:] + bytes(5))
        self.assertEqual(layer.read(-2, 4, pad=True), bytes(2) + self.expected[:2])
        self.assertEqual(layer.read(size + 10, 4, pad=True), bytes(4))

    def test_mapping_covers_a_range_frame_by_frame(self):
        layer = self.open_layer(self.zst)
        offset, length = FRAME - 100, 2 * FRAME + 200
        maps = list(layer.mapping(offset, length))
        self.assertEqual([m[0] for m in maps], [offset, FRAME, 2 * FRAME, 3 * FRAME])
        self.assertEqual(sum(m[1] for m in maps), length)
        self.assertTrue(all(m[4] == "file" for m in maps))
        # Stored offsets increase frame after frame, from where frame 0 ends.
        self.assertEqual(maps[1][2], maps[0][2] + maps[0][3])
        with self.assertRaises(exceptions.InvalidAddressException):
            list(layer.mapping(len(self.expected) - 1, 2))

    def test_the_cache_is_bounded_and_reads_stay_right(self):
        saved = zstd_seekable.CACHE_BYTES
        zstd_seekable.CACHE_BYTES = 3 * FRAME
        try:
            layer = self.open_layer(self.zst)
            for offset in range(0, len(self.expected), FRAME // 2):
                self.assertEqual(layer.read(offset, 10), self.expected[offset : offset + 10])
                self.assertLessEqual(layer._cached_bytes, 3 * FRAME)
            self.assertLessEqual(len(layer._cache), 3)
            # Frame 0 was evicted long ago and is read again correctly.
            self.assertNotIn(0, layer._cache)
            self.assertEqual(layer.read(0, FRAME + 1), self.expected[: FRAME + 1])
        finally:
            zstd_seekable.CACHE_BYTES = saved

    def test_a_pickled_layer_reads_the_same(self):
        layer = self.open_layer(self.zst)
        layer.read(0, 10)
        copy = pickle.loads(pickle.dumps(layer))
        self.addCleanup(copy.context.layers["file"].destroy)
        self.assertEqual(copy.read(FRAME * 7 - 3, 9), self.expected[FRAME * 7 - 3 : FRAME * 7 + 6])

    def test_a_table_with_checksums_is_read(self):
        # zstd's contrib writer can add a 4-byte checksum per entry (descriptor bit 7).
        data = self.zst.read_bytes()
        frames = struct.unpack_from("<I", data, len(data) - 9)[0]
        table_start = len(data) - (8 + 8 * frames + 9)
        entries = data[table_start + 8 : len(data) - 9]
        body = b"".join(entries[i : i + 8] + b"\0\0\0\0" for i in range(0, len(entries), 8))
        table = struct.pack("<II", 0x184D2A5E, len(body) + 9) + body
        table += struct.pack("<IBI", frames, 0x80, 0x8F92EAB1)
        layer = self.open_layer(self.variant("checksums.zst", data[:table_start] + table))
        self.assertEqual(layer.read(1000, 3 * FRAME), self.expected[1000 : 1000 + 3 * FRAME])

    def test_empty_frames_are_skipped(self):
        # The format allows frames of no bytes (airf writes none): one after frame 4, one last.
        data = self.zst.read_bytes()
        frames = struct.unpack_from("<I", data, len(data) - 9)[0]
        table_start = len(data) - (8 + 8 * frames + 9)
        entries = [struct.unpack_from("<II", data, table_start + 8 + 8 * n) for n in range(frames)]
        pieces, at = [], 0  # (stored bytes, decompressed size) per frame
        for stored, decompressed in entries:
            pieces.append((data[at : at + stored], decompressed))
            at += stored
        # Without a content size, as a streaming writer makes them: zstandard cannot size these.
        empty = (zstandard.ZstdCompressor(write_content_size=False).compress(b""), 0)
        pieces.insert(5, empty)
        pieces.append(empty)
        body = b"".join(piece for piece, _ in pieces)
        table = b"".join(struct.pack("<II", len(piece), d) for piece, d in pieces)
        table = struct.pack("<II", 0x184D2A5E, len(table) + 9) + table
        table += struct.pack("<IBI", len(pieces), 0, 0x8F92EAB1)
        layer = self.open_layer(self.variant("empty-frames.zst", body + table))
        self.assertEqual(layer.frame_count, len(pieces))
        self.assertEqual(layer.maximum_address, len(self.expected) - 1)
        for offset, length in ((5 * FRAME - 3, 6), (5 * FRAME, 1), (0, len(self.expected))):
            self.assertEqual(layer.read(offset, length), self.expected[offset : offset + length])


class Corruption(Fixtures):
    """Damaged files fail by name; nothing reads as zeros."""

    def assertRefused(self, path: pathlib.Path, words: str):
        with self.assertRaises(zstd_seekable.SeekableFormatError) as caught:
            self.open_layer(path)
        self.assertIn(words, str(caught.exception))

    def test_a_truncated_file_is_refused(self):
        data = self.zst.read_bytes()
        self.assertRefused(self.variant("cut1.zst", data[:-1]), "truncated")
        self.assertRefused(self.variant("half.zst", data[: len(data) // 2]), "truncated")

    def test_a_file_with_bytes_lost_before_the_table_is_refused(self):
        data = self.zst.read_bytes()
        table_len = 8 + 8 * struct.unpack_from("<I", data, len(data) - 9)[0] + 9
        cut = data[: len(data) - table_len - 100] + data[len(data) - table_len :]
        self.assertRefused(self.variant("lost.zst", cut), "truncated, cut or appended to")

    def test_a_wrong_frame_count_is_refused(self):
        data = bytearray(self.zst.read_bytes())
        struct.pack_into("<I", data, len(data) - 9, 7)
        self.assertRefused(self.variant("count.zst", bytes(data)), "frame count is corrupt")

    def test_a_wrong_entry_is_refused(self):
        data = bytearray(self.zst.read_bytes())
        frames = struct.unpack_from("<I", data, len(data) - 9)[0]
        first_entry = len(data) - (8 + 8 * frames + 9) + 8
        struct.pack_into(
            "<I", data, first_entry, struct.unpack_from("<I", data, first_entry)[0] + 1
        )
        self.assertRefused(self.variant("entry.zst", bytes(data)), "add up to")

    def test_reserved_descriptor_bits_are_refused(self):
        data = bytearray(self.zst.read_bytes())
        data[len(data) - 5] = 0x04
        self.assertRefused(self.variant("reserved.zst", bytes(data)), "reserved bits")

    def test_a_corrupt_frame_raises_on_read_even_with_pad(self):
        data = bytearray(self.zst.read_bytes())
        layer = self.open_layer(self.zst)
        index = 100
        start, end = layer._stored_starts[index], layer._stored_starts[index + 1]
        data[(start + end) // 2] ^= 0xFF
        bad = self.open_layer(self.variant("frame.zst", bytes(data)))
        # Its neighbours are intact.
        self.assertEqual(bad.read(0, FRAME), self.expected[:FRAME])
        for pad in (False, True):
            with self.subTest(pad=pad), self.assertLogs(zstd_seekable.vollog, "ERROR"):
                bad._reported.clear()  # logged once per frame: again for this read
                with self.assertRaises(zstd_seekable.SeekableFormatError) as caught:
                    bad.read(index * FRAME + 5, 10, pad=pad)
                self.assertIn(f"frame {index} ", str(caught.exception))
                self.assertIn("checksum", str(caught.exception))

    def test_a_corrupt_frame_is_logged_as_an_error_once(self):
        # Volatility's scanners swallow a read's exception; the log is what the analyst sees.
        data = bytearray(self.zst.read_bytes())
        start = self.open_layer(self.zst)._stored_starts[3]
        data[start + 40] ^= 0xFF
        bad = self.open_layer(self.variant("logged.zst", bytes(data)))
        with self.assertLogs(zstd_seekable.vollog, "ERROR") as logs:
            for _ in range(2):
                with self.assertRaises(zstd_seekable.SeekableFormatError):
                    bad.read(3 * FRAME, 1)
        self.assertEqual(len(logs.output), 1)
        self.assertIn("frame 3 ", logs.output[0])


class Stacking(Fixtures):
    """The stacker, and Volatility's LiME layer on top of this one."""

    def stack(self, path: pathlib.Path):
        ctx = self.context()
        name = open_file(ctx, "FileLayer", path)
        # The two stackers at hand; `vol` itself, with all of them, is run by
        # tests/scripts/volatility-layer-check.sh.
        stackers = [zstd_seekable.ZstdSeekableStacker, lime.LimeStacker]
        return ctx, stacker.LayerStacker.stack_layer(ctx, name, stackers)

    def test_the_stacker_takes_a_seekable_file_only(self):
        ctx = self.context()
        open_file(ctx, "seekable", self.zst)
        plain = self.dir / "plain.zst"
        subprocess.run(["zstd", "-q", "-f", "-o", str(plain), str(self.dir / "raw")], check=True)
        open_file(ctx, "plain", plain)
        open_file(ctx, "raw", self.dir / "raw")
        layer = zstd_seekable.ZstdSeekableStacker.stack(ctx, "seekable")
        self.assertIsInstance(layer, zstd_seekable.ZstdSeekableLayer)
        with self.assertLogs(zstd_seekable.vollog, "WARNING") as logs:
            self.assertIsNone(zstd_seekable.ZstdSeekableStacker.stack(ctx, "plain"))
        self.assertIn("no seek table", logs.output[0])
        self.assertIsNone(zstd_seekable.ZstdSeekableStacker.stack(ctx, "raw"))

    def test_a_truncated_file_is_not_stacked_and_says_why(self):
        ctx = self.context()
        open_file(ctx, "cut", self.variant("cut.zst", self.zst.read_bytes()[:-3]))
        with self.assertLogs(zstd_seekable.vollog, "WARNING") as logs:
            self.assertIsNone(zstd_seekable.ZstdSeekableStacker.stack(ctx, "cut"))
        self.assertIn("truncated", logs.output[0])

    def test_lime_stacks_on_the_seekable_layer(self):
        banner = b"Linux version 6.1.0-test (x@y) (gcc 12) #1 SMP\0"
        low = sample(3 * FRAME, seed=2)
        high = bytearray(sample(5 * FRAME, seed=3))
        high[0x1234 : 0x1234 + len(banner)] = banner
        raw = self.variant("mem.lime", lime_image([(0x1000, low), (0x100000, bytes(high))]))
        zst = self.dir / "mem.lime.zst"
        agent_compress(raw, zst, FRAME)
        ctx, names = self.stack(zst)
        top, below = ctx.layers[names[0]], ctx.layers[names[1]]
        self.assertIsInstance(top, lime.LimeLayer)
        self.assertIsInstance(below, zstd_seekable.ZstdSeekableLayer)
        self.assertEqual(top.read(0x100000 + 0x1234, len(banner)), banner)
        self.assertEqual(top.read(0x1000, len(low)), low)
        self.assertEqual(top.maximum_address, 0x100000 + len(high) - 1)


if __name__ == "__main__":
    unittest.main()
