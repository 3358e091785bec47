"""One writer per run directory: an exclusive `flock` on RUN_DIR/.mtrl.lock, held for its whole
life by whatever writes the run (`mtrl train` and its resume, `mtrl sweep`'s task for a run, an
RLlib export). Reading a run (`mtrl eval`, `mtrl verify`, TensorBoard) takes no lock.

An flock belongs to an open file description, and the kernel drops it when the last descriptor
to that description closes, so a holder that dies, even by SIGKILL, frees it at once. The file
itself stays behind with the last holder's PID and host in it and blocks nobody. A child process
given the locked descriptor (`pass_fds`) and its number in MTRL_RUN_LOCK_FD shares its parent's
lock instead of conflicting with it: `mtrl sweep` starts each `mtrl train` that way.
`make_run_dir` creates a training's run directory and takes its lock before anything is written.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from mtrl.errors import MtrlError
from mtrl.run.checkpoint import list_checkpoints

if TYPE_CHECKING:
    from mtrl.config import Config

LOCK_FILE = ".mtrl.lock"
FD_ENV = "MTRL_RUN_LOCK_FD"
HOLDER_WAIT_S = 2.0  # how long a refused process waits for a new holder to write its PID


class RunDirBusy(MtrlError):
    """Another process holds the run directory's lock."""


class RunLock:
    """The held lock of one run directory; `release()` (or leaving the `with` block) frees it."""

    def __init__(self, run_dir: Path, fd: int, parent: bytes | None = None) -> None:
        """`parent`: the holder record this process replaced in a lock it shares with its parent."""
        self.run_dir, self.fd, self.parent = run_dir, fd, parent

    @classmethod
    def acquire(cls, run_dir: str | Path, wait_s: float = 0.0) -> RunLock:
        """Lock `run_dir` (which must exist), waiting up to `wait_s` seconds for a holder to end;
        raise RunDirBusy naming the holder's PID and host when it does not."""
        run_dir = Path(run_dir)
        path = run_dir / LOCK_FILE
        fd = _inherited(path)
        parent = None if fd is None else os.pread(fd, 4096, 0)
        if fd is None:
            try:  # no O_TRUNC: the holder's PID must survive a refused open
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                raise MtrlError(f"cannot lock run directory {run_dir}: {exc.strerror} ({path})") from None
        deadline = time.monotonic() + wait_s
        while True:
            try:  # on an fd that already holds the lock (an inherited one) this succeeds at once
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise RunDirBusy(
                        f"run directory {run_dir} is in use by {_holder(path)}; a run has one writer at a "
                        "time: wait for that process to end (or stop it), or pick another run_dir"
                    ) from None
                time.sleep(0.5)
            except OSError as exc:  # e.g. ENOLCK: a network filesystem without lock support
                os.close(fd)
                raise MtrlError(f"cannot lock run directory {run_dir}: {exc.strerror} ({path})") from None
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        _write(fd, (json.dumps(holder) + "\n").encode())
        return cls(run_dir, fd, parent)

    def release(self) -> None:
        """Close the descriptor, which frees the lock unless a child still holds a copy of it. The
        file is left in place: deleting it would let a waiter lock an unlinked inode."""
        if self.fd >= 0:
            if self.parent is not None:  # the parent holds on: a refused process should name it, not us
                _write(self.fd, self.parent)
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


def _write(fd: int, record: bytes) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, record, 0)


def _inherited(path: Path) -> int | None:
    """The descriptor a parent passed down in MTRL_RUN_LOCK_FD, if it is this lock file's; a
    descriptor of another file (another run directory's) is not used, and this run is then
    locked anew, which fails loudly if the parent holds it."""
    value = os.environ.pop(FD_ENV, None)
    if value is None:
        return None
    try:
        fd = int(value)
        mine, theirs = os.fstat(fd), os.stat(path)
    except (ValueError, OSError):
        return None
    return fd if (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino) else None


def _holder(path: Path) -> str:
    """'PID 123 on host h (since ...)' from the lock file. Its content may still be the previous
    holder's, or empty, for the moment between the new holder's flock and its write (or name a
    child that shared its parent's lock and was killed): re-read while it names a dead process
    of this host."""
    deadline = time.monotonic() + HOLDER_WAIT_S
    while True:
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
            pid, host, since = int(info["pid"]), str(info["host"]), str(info["since"])
        except (OSError, ValueError, KeyError, TypeError):
            pid, host, since = -1, "", ""
        if pid > 0 and (host != socket.gethostname() or _alive(pid)):
            return f"PID {pid} on host {host} (since {since})"
        if time.monotonic() >= deadline:
            return "another process (the lock file does not name a live one)"
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def make_run_dir(cfg: Config) -> tuple[Path, RunLock]:
    """The run directory, created when new, and its lock (mtrl.run.lock), taken before anything
    else is written there; refused when another process holds it."""
    if cfg.resume:
        path = Path(cfg.resume)
        if not path.is_dir():
            raise MtrlError(f"resume={cfg.resume}: no such run directory")
    elif cfg.run_dir:
        path = Path(cfg.run_dir)
    else:
        path = Path("runs") / f"{cfg.env.suite}-{cfg.algo}-s{cfg.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # an unwritable parent, a file in the way
        raise MtrlError(f"cannot create run directory {path}: {exc.strerror or exc}") from None
    lock = RunLock.acquire(path)
    if not cfg.resume and list_checkpoints(path):  # checked under the lock: its holder may be writing them
        lock.release()
        raise MtrlError(
            f"run_dir {path} already holds checkpoints; pass resume={path} to continue it, or pick another run_dir"
        )
    return path, lock
