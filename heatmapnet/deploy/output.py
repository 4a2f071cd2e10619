"""``predict``'s json, written entry by entry as the entries come.

:class:`JsonStream` writes a list (one entry per image) or an object with one list member (a
video's frames) without ever holding the list: each entry goes to a temporary file beside the
output as soon as it is made, so predicting over 10,000 images holds one batch at a time. The
layout is the one ``json.dumps(payload, indent=1)`` gives. The text is strict JSON: an entry
with a number that is not finite is an error, and nothing is written. Only a complete file
replaces ``out`` (an error midway leaves what was there before); with no ``out`` the finished
text is printed.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Optional

from .errors import DeployError


def _dumps(value) -> str:
    try:
        return json.dumps(value, indent=1, allow_nan=False)
    except ValueError:
        raise DeployError("a prediction holds a value that is not a finite number (the model's output is not "
                          "finite); nothing written") from None


def _indented(text: str, depth: int) -> str:
    pad = " " * depth
    return "\n".join(pad + line for line in text.split("\n"))


def _member(key: str, value, depth: int = 1) -> str:
    """``"key": value`` as a member of an object at ``depth`` (indent 1)."""
    first, *rest = _dumps(value).split("\n")
    return "\n".join([" " * depth + f"{json.dumps(key)}: {first}"] + [" " * depth + line for line in rest])


class JsonStream:
    """A json list written as it grows: ``add(entry)`` each entry, then ``close(tail)``. ``head``
    given (a dict), the json is that object with the list as its member ``key`` and ``tail``'s
    members after it; else the list itself. Use it as a context manager: an exception inside
    discards what was written."""

    def __init__(self, out: Optional[str], head: Optional[dict] = None, key: str = "entries"):
        self.out = None if out is None else Path(out)
        if self.out is not None and self.out.is_dir():
            raise DeployError(f"--out {out}: is a folder; give the path of the json file to write")
        self.head, self.key, self.count = head, key, 0
        if self.out is None:
            self.file = tempfile.TemporaryFile("w+", encoding="utf-8")
        else:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            handle, self.temporary = tempfile.mkstemp(prefix=f".{self.out.name}.", suffix=".tmp", dir=self.out.parent)
            self.file = os.fdopen(handle, "w", encoding="utf-8")
        self.depth = 1 if head is None else 2  # of the list's entries

    def _open_list(self) -> str:
        if self.head is None:
            return "["
        members = [_member(name, value) for name, value in self.head.items()]
        return "{\n" + "".join(member + ",\n" for member in members) + f" {json.dumps(self.key)}: ["

    def add(self, entry) -> None:
        text = _indented(_dumps(entry), self.depth)
        self.file.write((self._open_list() + "\n" if self.count == 0 else ",\n") + text)
        self.count += 1

    def close(self, tail: Optional[dict] = None) -> None:
        """Finish the json (``tail``: members after the list) and put it in place, or print it."""
        if self.count == 0:
            self.file.write(self._open_list() + "]")
        else:
            self.file.write("\n" + " " * (self.depth - 1) + "]")
        if self.head is not None:
            self.file.write("".join(",\n" + _member(name, value) for name, value in (tail or {}).items()) + "\n}")
        if self.out is None:
            self.file.seek(0)
            shutil.copyfileobj(self.file, sys.stdout)
            sys.stdout.write("\n")
            self.file.close()
            return
        self.file.close()
        os.replace(self.temporary, self.out)

    def discard(self) -> None:
        self.file.close()
        if self.out is not None and os.path.exists(self.temporary):
            os.unlink(self.temporary)

    def __enter__(self) -> "JsonStream":
        return self

    def __exit__(self, kind, error, trace) -> None:
        if kind is not None:
            self.discard()
