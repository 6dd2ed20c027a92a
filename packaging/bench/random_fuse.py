#!/usr/bin/env python3
"""A FUSE file system with one read-only file of incompressible bytes, generated on read.

For packaging/bench/rss.sh only: a 100 GiB-class source that costs no disk and no sparse
shortcut. The file's bytes at offset o are a 64 MiB block of random bytes at o mod 64 MiB:
every zstd frame (2 MiB, compressed on its own) is random, so nothing compresses.

    random_fuse.py MOUNTPOINT SIZE_GIB
"""
import errno
import os
import stat
import sys

from fuse import FUSE, FuseOSError, Operations

BLOCK = 64 << 20


class RandomFile(Operations):
    def __init__(self, size):
        self.size = size
        self.block = os.urandom(BLOCK) * 2  # doubled: a read never wraps

    def getattr(self, path, fh=None):
        if path == "/":
            return {"st_mode": stat.S_IFDIR | 0o555, "st_nlink": 2}
        if path == "/random.img":
            return {"st_mode": stat.S_IFREG | 0o444, "st_nlink": 1, "st_size": self.size}
        raise FuseOSError(errno.ENOENT)

    def readdir(self, path, fh):
        return [".", "..", "random.img"]

    def read(self, path, size, offset, fh):
        size = max(0, min(size, self.size - offset))
        start = offset % BLOCK
        return self.block[start:start + size]


if __name__ == "__main__":
    FUSE(RandomFile(int(sys.argv[2]) << 30), sys.argv[1], foreground=True, ro=True,
         max_read=1 << 20, big_writes=True, direct_io=False)
