"""Shared pieces of the drivers: action results, timing and the name -> backend registry."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


def quoted(value: object) -> str:
    """A value inside an operator's message, quoted as the environment file writes it ("text"), not as Python."""
    text = value if isinstance(value, str) else str(value)
    return json.dumps(text, ensure_ascii=False)


def plain_error(exc: BaseException) -> str:
    """An exception in an operator's words: its message (the OS's for an OSError), never a Python repr."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}" + (f": {exc.filename}" if exc.filename else "")
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class DriverError(RuntimeError):
    """A verb could not be done; the message says what, where, and what was seen."""


@dataclass
class ActionResult:
    """One thing done to a system, as the journal records it (kind "action")."""

    name: str
    target: str
    result: str = "ok"
    duration_s: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)


@contextmanager
def timed(action: ActionResult) -> Iterator[ActionResult]:
    start = time.perf_counter()
    try:
        yield action
    finally:
        action.duration_s = round(time.perf_counter() - start, 4)


class Registry[T]:
    """Backends by name; an unknown name is an error that lists the known ones."""

    def __init__(self, verb: str) -> None:
        self.verb = verb
        self._backends: dict[str, type[T]] = {}

    def register(self, name: str) -> Any:
        def decorate(cls: type[T]) -> type[T]:
            self._backends[name] = cls
            return cls

        return decorate

    def get(self, name: str) -> type[T]:
        try:
            return self._backends[name]
        except KeyError:
            known = ", ".join(sorted(self._backends))
            raise DriverError(f"unknown {self.verb} {quoted(name)} (known: {known})") from None

    def names(self) -> list[str]:
        return sorted(self._backends)
