"""Output safety for every writing command: check the paths up front, then lock them.

Rule: psrq replaces only what psrq wrote. A file may replace a file; a directory may replace a
psrq directory (a model directory with our ``manifest.json``, a samples directory with our
``meta.json``) or an empty one; anything else is refused with an error naming the path and what
is there, *before* any work starts. Paths that cannot be written (under a file, in a read-only
or pseudo file system) are refused up front too.

While a command runs it holds an exclusive lock (the ``filelock`` library, an OS-level
``flock`` released by the kernel if the process dies) on each of its outputs; a second writer
fails at once with the holder's PID and the path, or waits with ``--wait``::

    with claim_outputs(Output(out, "file", "--out"), Output(model_dir, "model_dir", "--model-dir"), wait=wait):
        ...  # fit, then write
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from psrq.errors import LockedError, OutputError

Kind = Literal["file", "model_dir", "dir"]
MARKERS = {"manifest.json": "format_version", "meta.json": "fingerprint"}


@dataclass(frozen=True)
class Output:
    """One path a command writes. kind: "file" (replaced by a file), "model_dir" (replaced by a
    psrq directory), "dir" (a folder psrq writes files into, e.g. a run directory)."""

    path: Path
    kind: Kind
    option: str = "output"
    lock: bool = True  # False: checked only (it lies inside another, locked output)

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))


def is_psrq_dir(path: str | os.PathLike[str]) -> bool:
    """True for a directory psrq wrote: a manifest.json (model dirs) or meta.json (samples) of ours."""
    p = Path(path)
    for name, key in MARKERS.items():
        try:
            content = json.loads((p / name).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(content, dict) and key in content:
            return True
    return False


def _what_is(path: Path) -> str:
    """A short description of what is at `path`, for error messages."""
    try:
        st = path.lstat()
    except OSError:
        return "nothing"
    if stat.S_ISLNK(st.st_mode):
        return "a symbolic link"
    if stat.S_ISDIR(st.st_mode):
        try:
            names = sorted(os.listdir(path))
        except OSError:
            return "a directory"
        if not names:
            return "an empty directory"
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        return f"a directory with {len(names)} entr{'y' if len(names) == 1 else 'ies'} ({shown}) and no psrq manifest"
    if stat.S_ISREG(st.st_mode):
        return "a file"
    return "a special file (device, socket or pipe)"


def check_replaceable(
    path: str | os.PathLike[str], *, as_dir: bool, option: str = "output"
) -> None:
    """OutputError unless writing a file (as_dir=False) or a directory (as_dir=True) at `path`
    may replace what is there now."""
    p = Path(path)
    if not os.path.lexists(p):
        return
    if p.is_symlink() and not as_dir:
        return  # the link itself is replaced; what it points to is untouched
    is_dir = p.is_dir() and not p.is_symlink()
    if not as_dir:
        if is_dir:
            raise OutputError(
                f"{option} {p}: is {_what_is(p)}; psrq writes a file here and replaces only files. Choose a file path."
            )
        if not p.is_file():
            raise OutputError(f"{option} {p}: is {_what_is(p)}; psrq replaces only regular files")
        return
    if not is_dir:
        raise OutputError(
            f"{option} {p}: is {_what_is(p)}; psrq writes a directory here and replaces only a directory psrq wrote"
        )
    if any(p.iterdir()) and not is_psrq_dir(p):
        raise OutputError(
            f"{option} {p}: is {_what_is(p)}; psrq replaces only a directory it wrote (one with its manifest.json). "
            "Choose a new path or move that directory away."
        )


def check_writable(path: str | os.PathLike[str], *, option: str = "output") -> None:
    """OutputError when `path` cannot be created: its nearest existing ancestor is a file, or a
    place where nothing can be written (read-only, /sys, /proc). Writes nothing that stays."""
    p = Path(path).absolute()
    ancestor = p if p.is_dir() else p.parent
    while not os.path.lexists(ancestor) and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputError(
            f"{option} {path}: cannot be written, {ancestor} is {_what_is(ancestor)}, not a directory"
        )
    try:
        fd, probe = tempfile.mkstemp(prefix=".psrq-write-probe.", dir=ancestor)
    except OSError as e:
        raise OutputError(
            f"{option} {path}: cannot be written under {ancestor} ({e.strerror or e})"
        ) from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)


def check_output(output: Output) -> None:
    """All up-front checks for one output (see the module docstring)."""
    if output.kind == "dir":
        if os.path.lexists(output.path) and not output.path.is_dir():
            raise OutputError(
                f"{output.option} {output.path}: is {_what_is(output.path)}; an output directory is needed here"
            )
    else:
        check_replaceable(output.path, as_dir=output.kind == "model_dir", option=output.option)
    check_writable(output.path, option=output.option)


def lock_path(path: str | os.PathLike[str]) -> Path:
    """The lock file of an output: a hidden sibling ``.<name>.lock`` (removed on release)."""
    p = Path(path).absolute()
    return p.parent / f".{p.name}.lock"


def _write_pid(fd: int) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)


def _holder_pid(lock_file: Path) -> str:
    try:
        text = lock_file.read_text().strip()
    except OSError:
        return "unknown"
    return text if text.isdigit() else "unknown"


@contextlib.contextmanager
def lock_output(
    path: str | os.PathLike[str], *, wait: bool = False, option: str = "output"
) -> Iterator[Path]:
    """Hold an exclusive lock on `path` (a file or directory output) for the duration.

    Without `wait`, a lock held by another process raises LockedError naming its PID and the
    path; with `wait`, block until it is released.
    """
    from filelock import FileLock, Timeout

    lf = lock_path(path)
    lf.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(lf, timeout=-1 if wait else 0, on_acquired=_write_pid)
    try:
        lock.acquire()
    except Timeout:
        raise LockedError(
            f"{option} {path} is being written by another psrq process (PID {_holder_pid(lf)}); "
            "wait for it to finish or pass --wait"
        ) from None
    try:
        yield lf
    finally:
        lock.release()


@contextlib.contextmanager
def claim_outputs(*outputs: Output | None, wait: bool = False) -> Iterator[None]:
    """Check every output up front, then lock them all (in a fixed order) for the duration."""
    wanted = [o for o in outputs if o is not None]
    for o in wanted:
        check_output(o)
    with contextlib.ExitStack() as stack:
        seen: set[Path] = set()
        for o in sorted((o for o in wanted if o.lock), key=lambda o: str(lock_path(o.path))):
            lf = lock_path(o.path)
            if lf in seen:
                continue
            seen.add(lf)
            stack.enter_context(lock_output(o.path, wait=wait, option=o.option))
        yield
