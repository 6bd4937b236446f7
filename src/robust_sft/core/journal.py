"""A batch journal: the finished batches of a long loop, appended one line each, so a killed run resumes where it
stopped instead of starting over (Self-Output's sampling, for one, takes half an hour on a CPU for a real model).

The first line holds a key (what the loop computes: its inputs, settings and model); a journal whose key differs is
started anew. Each batch's line is flushed to disk before the next batch starts; a line cut short by a kill is
ignored, so that batch simply runs again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


class BatchJournal:
    def __init__(self, path: str | os.PathLike, key: str):
        self.path, self.key = Path(path), key

    def finished(self) -> dict[int, object]:
        """Batch index -> its recorded result, from a journal of this key (empty for another key or none)."""
        if not self._has_key():
            return {}
        done = {}
        for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines()[1:]:
            try:
                entry = json.loads(line)
                done[int(entry["batch"])] = entry["result"]
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                continue  # a line cut short by a kill: that batch runs again
        return done

    def start(self) -> None:
        """Begin a journal of this key, unless one already holds it (then its batches are kept)."""
        if self._has_key():
            with open(self.path, "rb+") as f:  # a line cut short by a kill must not swallow the next one
                f.seek(0, os.SEEK_END)
                if f.tell() and (f.seek(-1, os.SEEK_END), f.read(1))[1] != b"\n":
                    f.write(b"\n")
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "w", encoding="utf-8") as f:
            f.write(json.dumps({"key": self.key}) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def record(self, batch: int, result) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"batch": batch, "result": result}) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    def _has_key(self) -> bool:
        if not self.path.exists():
            return False
        try:
            with open(self.path, encoding="utf-8", errors="replace") as f:
                return json.loads(f.readline()).get("key") == self.key
        except (json.JSONDecodeError, AttributeError, OSError):
            return False
