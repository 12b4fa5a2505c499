"""Streaming content digests with a (path, size, mtime_ns) cache."""
from __future__ import annotations

import hashlib
import os
import time
import tracemalloc

from retrainer.hashing import CHUNK_BYTES, DigestCache

OLD = time.time_ns() - 3_600 * 10**9   # an hour ago: past the racy window


def write(path, data: bytes, mtime_ns: int | None = OLD):
    path.write_bytes(data)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def test_file_digest_is_the_sha256_of_its_bytes(tmp_path):
    data = os.urandom(3 * CHUNK_BYTES + 17)
    path = write(tmp_path / "a.bin", data)

    assert DigestCache().file(path) == hashlib.sha256(data).hexdigest()


def test_tree_digest_follows_content_and_names_but_not_caches(tmp_path):
    write(tmp_path / "a.txt", b"one")
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub" / "b.txt", b"two")
    before = DigestCache().tree(tmp_path)

    (tmp_path / "__pycache__").mkdir()
    write(tmp_path / "__pycache__" / "a.cpython-311.pyc", b"bytecode")
    assert DigestCache().tree(tmp_path) == before

    write(tmp_path / "sub" / "b.txt", b"TWO")
    changed = DigestCache().tree(tmp_path)
    assert changed != before

    (tmp_path / "sub" / "b.txt").rename(tmp_path / "sub" / "c.txt")
    assert DigestCache().tree(tmp_path) not in (before, changed)


def test_an_unchanged_file_is_not_read_again_and_the_cache_outlives_the_process(tmp_path):
    database = tmp_path / "digests.sqlite"
    path = write(tmp_path / "data.csv", b"x,y\n1,2\n")
    first = DigestCache(database).file(path)

    # Same size and mtime, other bytes: only a cache hit can still answer the old digest.
    write(path, b"x,y\n3,4\n")
    assert DigestCache(database).file(path) == first

    write(path, b"x,y\n3,4\n", mtime_ns=OLD + 1)
    assert DigestCache(database).file(path) == hashlib.sha256(b"x,y\n3,4\n").hexdigest()


def test_a_file_modified_just_now_is_hashed_again_next_time(tmp_path):
    cache = DigestCache()
    path = write(tmp_path / "fresh.csv", b"aaaa", mtime_ns=None)
    mtime = path.stat().st_mtime_ns
    assert cache.file(path) == hashlib.sha256(b"aaaa").hexdigest()

    write(path, b"bbbb", mtime_ns=mtime)   # a rewrite within the timestamp granularity

    assert cache.file(path) == hashlib.sha256(b"bbbb").hexdigest()


def test_hashing_memory_does_not_grow_with_the_file(tmp_path):
    path = tmp_path / "big.bin"
    with open(path, "wb") as handle:
        for _ in range(64):
            handle.write(os.urandom(CHUNK_BYTES))

    tracemalloc.start()
    DigestCache().file(path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    assert peak < 4 * CHUNK_BYTES   # a 64 MiB file hashed with a few MiB at most
