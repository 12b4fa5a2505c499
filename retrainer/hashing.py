"""Content digests of files and folders: streamed in fixed-size chunks, so memory stays bounded whatever
the file size, and cached by (path, size, mtime_ns) so an unchanged file is read once.

The cache lives in memory and, when given a path, in a small SQLite file shared by every process using
the same state folder. A file modified less than `RACY_SECONDS` before it was hashed is not cached: a
rewrite within the filesystem's timestamp granularity could keep (size, mtime_ns) while changing the
bytes (git's "racy clean" problem), so such a file is simply hashed again next time.
"""
from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Callable, Iterable

CHUNK_BYTES = 1 << 20
RACY_SECONDS = 2.0

# Never part of a step's content: interpreter caches and VCS metadata change without the source changing.
IGNORED_DIRS = frozenset({"__pycache__", ".git", ".pytest_cache", ".ipynb_checkpoints"})
IGNORED_SUFFIXES = (".pyc", ".pyo")


class DigestCache:
    """sha256 digests of files, remembered by (path, size, mtime_ns)."""

    def __init__(self, path: Path | None = None) -> None:
        self._memory: dict[tuple[str, int, int], str] = {}
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS digests (path TEXT, size INTEGER, mtime_ns INTEGER,"
                             " sha256 TEXT NOT NULL, PRIMARY KEY (path, size, mtime_ns))")

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def file(self, path: Path) -> str:
        """Hex sha256 of the file's bytes."""
        resolved = str(Path(path).resolve())
        stat = os.stat(resolved)
        key = (resolved, stat.st_size, stat.st_mtime_ns)
        cached = self._lookup(key)
        if cached is not None:
            return cached
        digest = _stream_sha256(resolved)
        if time.time_ns() - stat.st_mtime_ns > RACY_SECONDS * 1e9:
            self._remember(key, digest)
        return digest

    def tree(self, path: Path, include: Callable[[Path], bool] | None = None) -> str:
        """Hex sha256 of a file, or of a folder: every file's relative name and content digest, in sorted
        order. `include` (given the relative path) narrows which files of a folder count."""
        path = Path(path)
        if path.is_file():
            return self.file(path)
        outer = hashlib.sha256(b"tree\0")
        for relative in iter_files(path):
            if include is not None and not include(relative):
                continue
            outer.update(relative.as_posix().encode() + b"\0" + self.file(path / relative).encode() + b"\n")
        return outer.hexdigest()

    def _lookup(self, key: tuple[str, int, int]) -> str | None:
        with self._lock:
            if key in self._memory:
                return self._memory[key]
            if self._db is None:
                return None
            row = self._db.execute("SELECT sha256 FROM digests WHERE path=? AND size=? AND mtime_ns=?",
                                   key).fetchone()
        if row is None:
            return None
        self._memory[key] = row[0]
        return row[0]

    def _remember(self, key: tuple[str, int, int], digest: str) -> None:
        with self._lock:
            self._memory[key] = digest
            if self._db is not None:
                self._db.execute("INSERT OR REPLACE INTO digests VALUES (?, ?, ?, ?)", (*key, digest))


def iter_files(root: Path) -> Iterable[Path]:
    """Relative paths of the files under `root`, sorted, skipping caches and VCS folders."""
    found: list[Path] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in IGNORED_DIRS]
        for name in files:
            if not name.endswith(IGNORED_SUFFIXES):
                found.append(Path(folder, name).relative_to(root))
    return sorted(found)


def _stream_sha256(path: str) -> str:
    digest = hashlib.sha256()
    buffer = bytearray(CHUNK_BYTES)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while read := handle.readinto(buffer):
            digest.update(view[:read])
    return digest.hexdigest()
