"""Worker output on disk, bounded: `<home>/logs/<uid>-<replica>.log` plus one rotated `.1` file.

A worker's stdout and stderr come through one pipe that the supervisor drains line by line, so a
chatty or looping worker can never fill the disk (at most twice `max_bytes` per replica), and the
tail the UI shows is read back from the same files, across restarts of the replica.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import BinaryIO

DEFAULT_MAX_BYTES = 4 * 1024 * 1024


class BoundedLog:
    """Append-only log file that rotates to `<name>.1` past `max_bytes`."""

    def __init__(self, path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._file: BinaryIO | None = None
        self._size = 0

    @property
    def backup(self) -> Path:
        return self.path.with_name(self.path.name + ".1")

    def _open(self) -> BinaryIO:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("ab")
            self._size = self._file.tell()
        return self._file

    def write(self, data: bytes) -> None:
        f = self._open()
        if self._size + len(data) > self.max_bytes and self._size > 0:
            f.close()
            self.path.replace(self.backup)
            self._file = None
            f = self._open()
        f.write(data)
        f.flush()
        self._size += len(data)

    def mark(self, text: str) -> None:
        """A line from the supervisor itself (start, exit, kill), to read the story in one place."""
        self.write(f"--- modelport: {text}\n".encode())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def tail(self, lines: int = 200) -> list[str]:
        """The last `lines` lines over the rotated file and the current one."""
        out: deque[str] = deque(maxlen=max(lines, 0))
        for path in (self.backup, self.path):
            try:
                with path.open("rb") as f:
                    for raw in f:
                        out.append(raw.decode("utf-8", "replace").rstrip("\n"))
            except FileNotFoundError:
                continue
        return list(out)
