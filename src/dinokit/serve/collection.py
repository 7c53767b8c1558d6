"""Which image files the service may show: exactly the paths of its index and duplicate groups.

A page asks for a picture by the path the service gave it (relative to the collection's root). Nothing
else is ever read: an absolute path, a `..` component, a path that is not in the collection, or one whose
file has become a symbolic link leading out of the collection since it was embedded is refused.
"""
from __future__ import annotations

import os
from pathlib import PurePosixPath


class Refused(Exception):
    """A path the service will not read; `status` is the HTTP status to answer (403 refused, 404 unknown)."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


class Collection:
    def __init__(self, paths):
        self.paths = frozenset(os.path.abspath(p) for p in paths)
        if not self.paths:
            self.root = None
        elif len(self.paths) == 1:
            self.root = os.path.dirname(next(iter(self.paths)))
        else:
            self.root = os.path.commonpath(list(self.paths))

    def __len__(self) -> int:
        return len(self.paths)

    def key(self, path: str) -> str:
        """The name a client uses for `path`: relative to the root, with forward slashes."""
        return PurePosixPath(*os.path.relpath(os.path.abspath(path), self.root).split(os.sep)).as_posix()

    def resolve(self, key: str) -> str:
        """The file behind `key`, or `Refused` saying why not."""
        if not key or "\x00" in key:
            raise Refused(403, "no path given")
        parts = PurePosixPath(key).parts
        if key.startswith(("/", "\\")) or os.path.isabs(key) or (parts and ":" in parts[0]):
            raise Refused(403, "absolute paths are refused: give the path as the service's answers name it")
        if ".." in parts or ".." in key.split("\\"):
            raise Refused(403, "'..' is refused: paths stay inside the collection")
        if self.root is None:
            raise Refused(404, "this service has no collection (start it with --index or --duplicates)")
        path = os.path.join(self.root, *parts)
        if path not in self.paths:
            raise Refused(404, f"{key} is not in the collection")
        real = os.path.realpath(path)
        if real != path and real not in self.paths:
            raise Refused(403, f"{key} is a symbolic link that leads out of the collection")
        return real
