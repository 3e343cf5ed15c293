"""Named shared-memory segments in /dev/shm, with a lifecycle WSM owns.

`multiprocessing.shared_memory` registers every segment with a resource tracker that deletes
it when the registering process exits (and warns about "leaks" on Python 3.11/3.12), which is
wrong for segments that outlive one process. WSM names its segments predictably and unlinks
them itself, so it maps the files directly.
"""

from __future__ import annotations

import mmap
import os
import re
from typing import Final

from engine.errors import RingError

SHM_DIR: Final = "/dev/shm"
PREFIX: Final = "wsm."
_NAME_RE: Final = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")


def ring_name(instance: str, exchange: str) -> str:
    return f"{PREFIX}{instance}.ring.{exchange}"


def symbols_name(instance: str) -> str:
    return f"{PREFIX}{instance}.symbols"


def instance_segments(instance: str) -> list[str]:
    """Names of every segment of one engine instance that exists now."""
    start = f"{PREFIX}{instance}."
    try:
        return sorted(n for n in os.listdir(SHM_DIR) if n.startswith(start))
    except FileNotFoundError:
        return []


def _path(name: str) -> str:
    if not _NAME_RE.match(name):
        raise RingError(f"invalid shared-memory segment name {name!r}")
    return os.path.join(SHM_DIR, name)


class Segment:
    """One mapped segment. `buf` is a writable memoryview over the whole mapping."""

    def __init__(self, name: str, mapping: mmap.mmap) -> None:
        self.name = name
        self._mmap = mapping
        self.buf = memoryview(mapping)

    @classmethod
    def create(cls, name: str, size: int) -> Segment:
        """Create a new segment; fails if one of that name exists."""
        path = _path(name)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, size)
            mapping = mmap.mmap(fd, size)
        except BaseException:
            os.unlink(path)
            raise
        finally:
            os.close(fd)
        return cls(name, mapping)

    @classmethod
    def open(cls, name: str) -> Segment:
        path = _path(name)
        fd = os.open(path, os.O_RDWR)
        try:
            size = os.fstat(fd).st_size
            if size == 0:
                raise RingError(f"shared-memory segment {name!r} is empty")
            mapping = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        return cls(name, mapping)

    @property
    def size(self) -> int:
        return len(self._mmap)

    def close(self) -> None:
        """Unmap. Every view derived from `buf` must have been released first."""
        self.buf.release()
        self._mmap.close()

    def unlink(self) -> None:
        unlink(self.name)


def exists(name: str) -> bool:
    return os.path.exists(_path(name))


def unlink(name: str) -> bool:
    """Remove a segment's name; mappings stay valid until closed. False if it was gone."""
    try:
        os.unlink(_path(name))
    except FileNotFoundError:
        return False
    return True


def pid_alive(pid: int) -> bool:
    """Whether a process of that pid exists (owners and writers are checked this way)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
