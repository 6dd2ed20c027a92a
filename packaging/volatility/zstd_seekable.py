"""Volatility 3 layer for zstd's seekable format: airf's `memory.lime.zst` without decompressing.

airf-agent stores a memory image as LiME, compressed into independent zstd frames (2 MiB of
image each by default) followed by a seek table: a skippable frame that lists each frame's
stored and decompressed size and ends with the magic 0x8F92EAB1 (zstd's
contrib/seekable_format/zstd_seekable_compression_format.md). With the table, any offset of the
image is one frame away, so this layer answers a read by decompressing only the frames it
touches and keeps the last few in a small LRU cache. Volatility's own LiME layer then stacks on
top of it, exactly as it would on the decompressed file.

Load it with `vol -p <this directory> -f memory.lime.zst <plugin>`: Volatility imports every
module under a `-p` directory at start-up, which registers `ZstdSeekableStacker` beside the
built-in stackers. Needs the `zstandard` package (Python 3.11 has no zstd module).

The stored bytes are evidence that anyone with write access to the bucket could have replaced,
so the table is checked before it is used: a table that does not add up, a truncated file or a
corrupt frame raises `SeekableFormatError` naming what is wrong. A read never fills a frame it
could not decompress with zeros.
"""

import bisect
import collections
import logging
import struct
import threading
from typing import Iterable, List, Optional, Tuple

from volatility3.framework import constants, exceptions, interfaces
from volatility3.framework.configuration import requirements

try:
    import zstandard
except ImportError:  # reported by name when a seekable file is met (see ZstdSeekableStacker)
    zstandard = None

vollog = logging.getLogger(__name__)

# The format's constants (agent/src/seekable.rs writes the same).
SKIPPABLE_MAGIC = 0x184D2A5E
SEEKABLE_MAGIC = 0x8F92EAB1
ZSTD_FRAME_MAGIC = 0xFD2FB528
MAX_FRAME_SIZE = 1 << 30
# Skippable frame header: magic, payload length.
_HEADER = struct.Struct("<II")
# Footer: frame count, descriptor (bit 7: per-frame checksums; bits 2-6 reserved), magic.
_FOOTER = struct.Struct("<IBI")
_CHECKSUM_FLAG = 0x80
_RESERVED_BITS = 0x7C
# An empty table: header and footer only.
MIN_TABLE_LEN = _HEADER.size + _FOOTER.size

# Decompressed frames kept in memory. 64 MiB is 32 frames at the agent's default 2 MiB: enough
# for page-table walks that hop between a few regions; one frame is always kept.
CACHE_BYTES = 64 << 20


class SeekableFormatError(exceptions.LayerException):
    """The stored bytes are not a usable zstd seekable stream; the message says why."""


def read_seek_table(
    layer: interfaces.layers.DataLayerInterface,
) -> List[Tuple[int, int]]:
    """Reads and checks the seek table at the end of `layer`.

    Returns each frame's (stored size, decompressed size) in stream order. Raises
    SeekableFormatError when the table is absent, malformed, or does not describe exactly the
    bytes before it (a truncated or appended-to file).
    """
    size = layer.maximum_address + 1
    if size < MIN_TABLE_LEN:
        raise SeekableFormatError(
            layer.name,
            f"{size} bytes are too few for a zstd seekable stream"
            f" (an empty one has {MIN_TABLE_LEN})",
        )
    frames, descriptor, magic = _FOOTER.unpack(layer.read(size - _FOOTER.size, _FOOTER.size))
    if magic != SEEKABLE_MAGIC:
        raise SeekableFormatError(
            layer.name,
            f"the file ends with 0x{magic:08x}, not the seek table's magic 0x{SEEKABLE_MAGIC:08x}:"
            " truncated, or not in the seekable format",
        )
    if descriptor & _RESERVED_BITS:
        raise SeekableFormatError(
            layer.name, f"the seek table descriptor 0x{descriptor:02x} sets reserved bits"
        )
    entry_len = 12 if descriptor & _CHECKSUM_FLAG else 8
    table_len = _HEADER.size + frames * entry_len + _FOOTER.size
    if table_len > size:
        raise SeekableFormatError(
            layer.name,
            f"the seek table counts {frames} frames ({table_len} bytes of table), "
            f"the file has only {size} bytes: truncated or corrupt",
        )
    table_start = size - table_len
    table = layer.read(table_start, table_len)
    skippable, payload = _HEADER.unpack_from(table, 0)
    if skippable != SKIPPABLE_MAGIC:
        raise SeekableFormatError(
            layer.name,
            f"the seek table for {frames} frames should start at byte {table_start} with magic "
            f"0x{SKIPPABLE_MAGIC:08x}, found 0x{skippable:08x}: its frame count is corrupt",
        )
    if payload != table_len - _HEADER.size:
        raise SeekableFormatError(
            layer.name,
            f"the seek table header announces {payload} bytes,"
            f" its footer implies {table_len - _HEADER.size}",
        )
    entries = []
    for n in range(frames):
        stored, decompressed = struct.unpack_from("<II", table, _HEADER.size + n * entry_len)
        if decompressed > MAX_FRAME_SIZE:
            raise SeekableFormatError(
                layer.name,
                f"seek table entry {n} claims a frame of {decompressed} bytes;"
                f" the format allows at most {MAX_FRAME_SIZE}",
            )
        entries.append((stored, decompressed))
    stored_total = sum(stored for stored, _ in entries)
    if stored_total != table_start:
        raise SeekableFormatError(
            layer.name,
            f"the seek table's frames add up to {stored_total} stored bytes, but {table_start} "
            "bytes precede the table: the file was truncated, cut or appended to",
        )
    return entries


def looks_seekable(layer: interfaces.layers.DataLayerInterface) -> bool:
    """True when `layer` ends with the seek table's magic (cheap: reads four bytes)."""
    size = layer.maximum_address + 1
    if size < MIN_TABLE_LEN:
        return False
    (magic,) = struct.unpack("<I", layer.read(size - 4, 4))
    return magic == SEEKABLE_MAGIC


def starts_with_zstd_frame(layer: interfaces.layers.DataLayerInterface) -> bool:
    """True when `layer` begins with a zstd frame's magic."""
    if layer.maximum_address + 1 < 4:
        return False
    (magic,) = struct.unpack("<I", layer.read(layer.minimum_address, 4))
    return magic == ZSTD_FRAME_MAGIC


class ZstdSeekableLayer(interfaces.layers.TranslationLayerInterface):
    """The decompressed bytes of a zstd seekable stream held in `base_layer`.

    Offsets are those of the decompressed image (for airf, of the LiME file). Each read
    decompresses only the frames it touches; the most recently used frames stay cached.
    Read-only.
    """

    def __init__(
        self,
        context: interfaces.context.ContextInterface,
        config_path: str,
        name: str,
        metadata: Optional[dict] = None,
    ) -> None:
        super().__init__(context, config_path, name, metadata)
        if zstandard is None:
            raise SeekableFormatError(
                name,
                "reading zstd needs the zstandard package: pip install zstandard",
            )
        self._base_layer = self.config["base_layer"]
        entries = read_seek_table(self._context.layers[self._base_layer])
        # Where each frame starts, stored and decompressed; the last item is the total.
        self._stored_starts = [0]
        self._starts = [0]
        self._sizes = []
        for stored, decompressed in entries:
            self._stored_starts.append(self._stored_starts[-1] + stored)
            self._starts.append(self._starts[-1] + decompressed)
            self._sizes.append(decompressed)
        self._size = self._starts[-1]
        if self._size == 0:
            raise SeekableFormatError(
                name, "the seekable stream holds no data (no frames, or only empty ones)"
            )
        self._reset_cache()

    def _reset_cache(self) -> None:
        # frame index -> decompressed bytes, least recently used first
        self._cache: "collections.OrderedDict[int, bytes]" = collections.OrderedDict()
        self._cached_bytes = 0
        self._lock = threading.Lock()
        self._dctx = None
        self._reported: set = set()  # frames already reported corrupt

    # Pickling (Volatility's multiprocessing) carries the table, not the cache or the lock.
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        for key in ("_cache", "_cached_bytes", "_lock", "_dctx", "_reported"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._reset_cache()

    @classmethod
    def get_requirements(cls) -> List[interfaces.configuration.RequirementInterface]:
        return [requirements.TranslationLayerRequirement(name="base_layer", optional=False)]

    @property
    def dependencies(self) -> List[str]:
        return [self._base_layer]

    @property
    def minimum_address(self) -> int:
        return 0

    @property
    def maximum_address(self) -> int:
        return self._size - 1

    @property
    def frame_count(self) -> int:
        """Number of frames in the stream."""
        return len(self._sizes)

    def is_valid(self, offset: int, length: int = 1) -> bool:
        if length <= 0:
            raise ValueError("Length must be positive")
        return 0 <= offset and offset + length <= self._size

    def _frame_index(self, offset: int) -> int:
        """The frame holding decompressed byte `offset` (0 <= offset < size).

        bisect_right skips empty frames: of several frames starting at one offset, the last,
        the only one that can hold bytes, is chosen.
        """
        return bisect.bisect_right(self._starts, offset) - 1

    def _frame(self, index: int) -> bytes:
        """Frame `index` decompressed, from the cache or the base layer."""
        with self._lock:
            data = self._cache.get(index)
            if data is not None:
                self._cache.move_to_end(index)
                return data
            data = self._decompress(index)
            self._cache[index] = data
            self._cached_bytes += len(data)
            while self._cached_bytes > CACHE_BYTES and len(self._cache) > 1:
                _, evicted = self._cache.popitem(last=False)
                self._cached_bytes -= len(evicted)
            return data

    def _decompress(self, index: int) -> bytes:
        start = self._stored_starts[index]
        stored = self._stored_starts[index + 1] - start
        where = (
            f"frame {index} (stored bytes {start}-{start + stored - 1}, "
            f"image bytes {self._starts[index]}-{self._starts[index + 1] - 1})"
        )
        problem = None
        data = b""
        if stored == 0:
            problem = "has no stored bytes"
        else:
            compressed = self._context.layers.read(self._base_layer, start, stored)
            data, problem = self._decode(compressed, self._sizes[index])
        if problem is None:
            return data
        message = f"{where} {problem}"
        # Volatility's scanners swallow exceptions (logged at debug level only), so a corrupt
        # frame would silently end a scan: say it where the analyst sees it, once per frame.
        if index not in self._reported:
            self._reported.add(index)
            vollog.error(f"{self.name}: {message}")
        raise SeekableFormatError(self.name, message)

    def _decode(self, compressed: bytes, expected: int) -> Tuple[bytes, Optional[str]]:
        """One frame's bytes decompressed, or what is wrong with them."""
        if self._dctx is None:
            self._dctx = zstandard.ZstdDecompressor()
        try:
            # Check the size the frame header claims before zstandard allocates it.
            claimed = zstandard.frame_content_size(compressed)
            if claimed not in (expected, -1):
                return b"", f"has a header that says {claimed} bytes, the seek table {expected}"
            # Exactly one frame, its XXH64 checked by zstd when the writer stored one (airf does).
            data = self._dctx.decompress(
                compressed, max_output_size=expected, allow_extra_data=False
            )
        except zstandard.ZstdError as e:
            return b"", f"is corrupt: {e}"
        if len(data) != expected:
            return b"", f"decompressed to {len(data)} bytes, the seek table says {expected}"
        return data, None

    def read(self, offset: int, length: int, pad: bool = False) -> bytes:
        """Reads `length` decompressed bytes at `offset`.

        Outside the image this raises InvalidAddressException, or with `pad` gives zeros for the
        part outside (as FileLayer does). A corrupt frame always raises SeekableFormatError.
        """
        if length <= 0:
            return b""
        end = offset + length
        low, high = max(offset, 0), min(end, self._size)
        if not pad and (low != offset or high != end):
            bad = offset if offset < 0 or offset >= self._size else self._size
            raise exceptions.InvalidAddressException(
                self.name, bad, f"Offset outside of the {self.name} image boundaries"
            )
        if low >= high:
            return b"\x00" * length
        index = self._frame_index(low)
        pieces = [b"\x00" * (low - offset)]
        position = low
        while position < high:
            if self._sizes[index] == 0:  # an empty frame holds nothing to read
                index += 1
                continue
            frame_start = self._starts[index]
            frame = self._frame(index)
            piece_end = min(high, frame_start + len(frame))
            pieces.append(frame[position - frame_start : piece_end - frame_start])
            position = piece_end
            index += 1
        pieces.append(b"\x00" * (end - high))
        return b"".join(pieces)

    def mapping(
        self, offset: int, length: int, ignore_errors: bool = False
    ) -> Iterable[Tuple[int, int, int, int, str]]:
        """Per frame touched: (offset, length, frame's stored offset, stored length, base layer).

        The mapping is not linear (a frame's bytes are compressed), so Volatility's scanners
        read through this layer's `read`.
        """
        end = offset + length
        low, high = max(offset, 0), min(end, self._size)
        if not ignore_errors and (low != offset or high != end or length <= 0):
            raise exceptions.InvalidAddressException(
                self.name, offset, f"Offset outside of the {self.name} image boundaries"
            )
        if low >= high:
            return
        index = self._frame_index(low)
        position = low
        while position < high:
            piece_end = min(high, self._starts[index + 1])
            if piece_end > position:
                stored = self._stored_starts[index]
                yield (
                    position,
                    piece_end - position,
                    stored,
                    self._stored_starts[index + 1] - stored,
                    self._base_layer,
                )
            position = max(position, piece_end)
            index += 1

    def write(self, offset: int, data: bytes) -> None:
        raise exceptions.LayerException(self.name, "a zstd seekable image is read-only")


class ZstdSeekableStacker(interfaces.automagic.StackerLayerInterface):
    """Puts ZstdSeekableLayer on a file that ends with the seek table's magic.

    Runs before the format layers (LiME is at stack order 10), so they stack on the
    decompressed bytes.
    """

    stack_order = 5

    @classmethod
    def stack(
        cls,
        context: interfaces.context.ContextInterface,
        layer_name: str,
        progress_callback: constants.ProgressCallback = None,
    ) -> Optional[interfaces.layers.DataLayerInterface]:
        base = context.layers[layer_name]
        # The file's URL for a FileLayer (what the analyst typed), else the layer's name.
        where = getattr(base, "location", layer_name)
        try:
            seekable = looks_seekable(base)
            plain_zstd = not seekable and starts_with_zstd_frame(base)
        except exceptions.InvalidAddressException:
            return None
        if plain_zstd and not base.dependencies:
            # Said once, at the file: a later stacker would otherwise fail with no reason given.
            vollog.warning(
                f"{where} is zstd-compressed but has no seek table at its end (truncated, or"
                " not written in the seekable format): decompress it with `zstd -d` first"
            )
        if not seekable:
            return None
        if zstandard is None:
            vollog.warning(
                f"{where} is a zstd seekable image, but the zstandard package is missing:"
                " pip install zstandard"
            )
            return None
        new_name = context.layers.free_layer_name("ZstdSeekableLayer")
        context.config[interfaces.configuration.path_join(new_name, "base_layer")] = layer_name
        try:
            return ZstdSeekableLayer(context, new_name, new_name)
        except SeekableFormatError as e:
            vollog.warning(f"{where} cannot be read as zstd seekable: {e}")
            return None
