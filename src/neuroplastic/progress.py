"""Progress reporting of long phases: the one home of progress bars and phase notes.

Everything goes to ``stderr``, so results and logs on ``stdout`` stay clean.  A function
that reports progress takes ``progress: bool | None``: ``True`` or ``False`` decide, and
``None`` (the default) follows the setting of the innermost :func:`progress_enabled` block
(off outside any block, so library calls and tests stay silent).  The command line turns it
on for a session when ``stderr`` is a terminal and ``--quiet`` is not given
(:func:`wants_progress`).

Bars are tqdm's when tqdm is installed, else one line per update step of a small own bar.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
from typing import Any, Iterator

_ENABLED: contextvars.ContextVar[bool] = contextvars.ContextVar("neuroplastic_progress", default=False)


def wants_progress(quiet: bool = False, stream: Any = None) -> bool:
    """Whether a command should show progress: not ``quiet`` and ``stream`` (default ``stderr``) is a terminal."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return not quiet and bool(isatty and isatty())


@contextlib.contextmanager
def progress_enabled(enabled: bool) -> Iterator[None]:
    """Within the block, functions called with ``progress=None`` show progress iff ``enabled``."""
    token = _ENABLED.set(bool(enabled))
    try:
        yield
    finally:
        _ENABLED.reset(token)


def resolve(progress: bool | None) -> bool:
    """``progress`` itself, or the session's setting when it is ``None``."""
    if progress is None:
        return _ENABLED.get()
    return bool(progress)


def note(message: str, progress: bool | None = None) -> None:
    """One line on ``stderr`` (a phase starts, a step compiles) when progress is on."""
    if resolve(progress):
        print(message, file=sys.stderr, flush=True)


def compiling_note(backend: Any, what: str, progress: bool | None = None) -> None:
    """The line shown before the first step of a phase on a compiling backend (JAX), once per phase:
    the first step then takes seconds while nothing else moves."""
    if getattr(backend, "compiles", False):
        note(f"compiling {what} for {getattr(backend, 'name', 'the backend')} (the first step of this phase waits for it) ...", progress)


class _LineBar:
    """A minimal bar without tqdm: ``desc: k/total`` lines at about every tenth of the way."""

    def __init__(self, total: int | None, desc: str) -> None:
        self.total, self.desc, self.n, self._shown = total, desc, 0, -1

    def update(self, n: int = 1) -> None:
        self.n += n
        tenth = 10 * self.n // max(self.total, 1) if self.total is not None else self.n // 10  # unknown length: every 10
        if tenth != self._shown:
            self._shown = tenth
            print(f"{self.desc}: {self.n}/{self.total if self.total is not None else '?'}", file=sys.stderr, flush=True)

    def set_postfix(self, **values: Any) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int | None, desc: str, progress: bool | None = None) -> Any:
    """A bar of ``total`` steps on ``stderr`` (``update(n)``, ``set_postfix(**kw)``, ``close()``), or ``None`` when
    progress is off."""
    if not resolve(progress):
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm ships with the venv
        return _LineBar(total, desc)
    return tqdm(total=total, desc=desc, leave=True, file=sys.stderr, dynamic_ncols=True)


__all__ = ["compiling_note", "note", "progress_bar", "progress_enabled", "resolve", "wants_progress"]
