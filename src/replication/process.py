"""Child processes that can never hang or outlive the app.

Each child runs in its own session (so the terminal's Ctrl-C or a signal to the app's
process group does not reach it before the app has stopped writing), is killed as a whole
process group on a deadline, and is asked by the kernel to die with its parent
(`PR_SET_PDEATHSIG`, applied by util-linux `setpriv --pdeathsig` when present, else by a
`prctl` call between fork and exec).

The death signal follows the *thread* that started the child (prctl(2)), so long-lived
children are started from a thread that lives as long as they do.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

_PR_SET_PDEATHSIG = 1
_SETPRIV = shutil.which("setpriv")
_prctl: Callable[..., int] | None
try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # pragma: no cover - not Linux
    _prctl = None
# Bytes of output kept from a bounded run: a Litestream error is one line.
_OUTPUT_LIMIT = 1 << 20


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _argv_and_preexec(argv: Sequence[str]) -> tuple[list[str], Callable[[], None] | None]:
    if _SETPRIV is not None:
        return [_SETPRIV, "--pdeathsig", "KILL", "--", *argv], None
    return list(argv), _die_with_parent


@dataclass(frozen=True)
class RunResult:
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    seconds: float


def spawn(
    argv: Sequence[str], *, env: Mapping[str, str], cwd: str | None = None
) -> subprocess.Popen[bytes]:
    """Start a child in its own session, dying with the calling thread; stdout and stderr
    are one pipe, read by the caller."""
    full, preexec = _argv_and_preexec(argv)
    return subprocess.Popen(
        full,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=dict(env),
        cwd=cwd,
        start_new_session=True,
        preexec_fn=preexec,  # only when setpriv is missing
        close_fds=True,
    )


def kill_group(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    """Signal the child's whole process group (it leads its own session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def run_bounded(
    argv: Sequence[str], *, timeout: float, env: Mapping[str, str], cwd: str | None = None
) -> RunResult:
    """Run to completion or kill the process group after `timeout` seconds.

    Never raises for the child's behaviour; raises OSError if it cannot be started.
    """
    full, preexec = _argv_and_preexec(argv)
    start = time.monotonic()
    proc = subprocess.Popen(
        full,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env),
        cwd=cwd,
        start_new_session=True,
        preexec_fn=preexec,
        close_fds=True,
    )
    timed_out = False
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        kill_group(proc)
        try:
            out, err = proc.communicate(timeout=5.0)
        except subprocess.TimeoutExpired:  # pragma: no cover - a child SIGKILL cannot stop
            out, err = b"", b""
    return RunResult(
        returncode=None if timed_out else proc.returncode,
        stdout=out[:_OUTPUT_LIMIT].decode("utf-8", "replace"),
        stderr=err[:_OUTPUT_LIMIT].decode("utf-8", "replace"),
        timed_out=timed_out,
        seconds=time.monotonic() - start,
    )
