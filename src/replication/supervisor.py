"""`litestream replicate` as a supervised sibling process.

Never `-exec`: as the app's parent Litestream can keep it from starting and ignores
SIGTERM while a restore hangs (research/litestream.md). Here the app stays the parent:
the child is restarted with backoff when it dies, its output is drained by the thread
that started it (and that thread is what the kernel watches for PR_SET_PDEATHSIG), and
`stop()` is bounded: SIGTERM (Litestream then makes a final sync, limited by its
`shutdown-sync-timeout`), then SIGKILL of the process group. Whether that final sync
reached the replica is logged: it is the last chance of the changes since the last sync.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from src.replication.binary import Litestream
from src.replication.config import ReplicaConfig
from src.replication.litestream_config import run_directory
from src.replication.process import kill_group, spawn
from src.replication.status import iso
from src.replication.sync_log import SyncTracker

logger = logging.getLogger(__name__)
_LINE_LIMIT = 64 * 1024
# A child that ran this long before dying is restarted after the shortest delay again.
_HEALTHY_RUN = 60.0


class Supervisor:
    """Keeps one `litestream replicate` running for `db_path` until `stop()`.

    `on_change` is called (from the supervisor's thread) whenever the tracker learned
    something; it must not block.
    """

    def __init__(
        self,
        config: ReplicaConfig,
        db_path: Path,
        litestream: Litestream,
        *,
        on_change: Callable[[], None] | None = None,
        restart_initial: float = 1.0,
        restart_max: float = 60.0,
    ) -> None:
        self.config = config
        self.db_path = db_path
        self.litestream = litestream
        self.tracker = SyncTracker()
        self._on_change = on_change or (lambda: None)
        self._restart_initial = restart_initial
        self._restart_max = restart_max
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self.restarts = 0
        self.exit_codes: list[int] = []
        self._stop_started = False
        self._stopped = threading.Event()
        self._clean = True

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._run, name=f"litestream-{self.db_path.name}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        delay = self._restart_initial
        # A little under our own stop deadline, so Litestream finishes its final sync
        # by itself before the SIGKILL.
        shutdown_sync = max(1.0, self.config.stop_timeout - 1.0)
        while not self._stopping.is_set():
            began = time.monotonic()
            try:
                with run_directory(
                    self.config, self.db_path, shutdown_sync_timeout=shutdown_sync
                ) as (config_path, env):
                    code = self._run_once(config_path, env)
            except OSError as exc:
                self.tracker.error(f"Litestream could not be started: {exc}")
                code = -1
            self._on_change()
            if self._stopping.is_set():
                break
            self.exit_codes.append(code)
            self.restarts += 1
            if time.monotonic() - began > _HEALTHY_RUN:
                delay = self._restart_initial
            logger.warning("Litestream exited (code %s); restarting in %.1f s", code, delay)
            self.tracker.error(f"Litestream exited with code {code}; restarting in {delay:g} s")
            self._on_change()
            if self._stopping.wait(delay):
                break
            delay = min(delay * 2, self._restart_max)

    def _run_once(self, config_path: Path, env: dict[str, str]) -> int:
        argv = [
            str(self.litestream.path),
            "replicate",
            "-no-expand-env",
            "-config",
            str(config_path),
        ]
        with self._lock:
            if self._stopping.is_set():
                return 0
            self.tracker.watching.clear()
            proc = spawn(argv, env=env, cwd=str(config_path.parent))
            self._proc = proc
        assert proc.stdout is not None
        version = self.tracker.version
        try:
            while True:
                line = proc.stdout.readline(_LINE_LIMIT)
                if not line:
                    break
                self.tracker.feed(line)
                if self.tracker.version != version:
                    version = self.tracker.version
                    self._on_change()
        finally:
            proc.stdout.close()
        # EOF: the child is gone or about to be; never wait unbounded.
        try:
            return proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            return proc.wait(timeout=5.0)

    def stop(self, timeout: float | None = None) -> bool:
        """SIGTERM, wait up to `timeout` (default the config's stop_timeout) for the final
        sync, then SIGKILL. Returns True when Litestream exited by itself.

        Idempotent and thread-safe: a second SIGTERM makes Litestream abandon its final
        sync, so only the first caller signals; later callers wait for it."""
        timeout = self.config.stop_timeout if timeout is None else timeout
        with self._lock:
            first = not self._stop_started
            self._stop_started = True
        if not first:
            self._stopped.wait(timeout + 10.0)
            return self._clean
        try:
            self._clean = self._stop(timeout)
        finally:
            self._stopped.set()
        return self._clean

    def _stop(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        # A Litestream that has not read the database yet would exit without syncing what
        # was just written (a stop right after a start or a restart): let it read first.
        if self.running and not self.tracker.watching.is_set():
            self.tracker.watching.wait(timeout / 2)
        with self._lock:
            self._stopping.set()
            proc = self._proc
        clean = True
        running = proc is not None and proc.poll() is None
        signalled = time.time()  # the tracker's clock
        if proc is not None and running:
            kill_group(proc, signal.SIGTERM)
            try:
                proc.wait(timeout=max(0.5, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                clean = False
                logger.warning("Litestream did not stop within %.1f s; killing it", timeout)
                kill_group(proc, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5.0)
        if self._thread is not None and self._thread is not threading.current_thread():
            # Joined first: that thread feeds Litestream's last lines to the tracker.
            self._thread.join(timeout=5.0)
        self._report_final_sync(running=running, clean=clean, since=signalled, timeout=timeout)
        return clean

    def _report_final_sync(
        self, *, running: bool, clean: bool, since: float, timeout: float
    ) -> None:
        """One log line on the final sync: done (INFO), or why not and since when the
        replica may lack changes (ERROR: a restart then restores an older database)."""
        snap = self.tracker.snapshot()
        url = self.config.masked_url
        since_last = iso(snap.last_sync_at) or "replication started"
        if not running:
            logger.warning(
                "Replication to %s: Litestream was not running at shutdown, so no final sync "
                "was made; changes made since %s may be missing from the replica.",
                url,
                since_last,
            )
            return
        if snap.last_sync_at is not None and snap.last_sync_at >= since:
            logger.info("Replication to %s: final sync at shutdown done.", url)
            return
        if not clean:
            why = f"not finished within {timeout:g} s; Litestream was killed"
        elif snap.last_error is not None and (snap.last_error_at or 0.0) >= since:
            why = snap.last_error
        elif not self.tracker.watching.is_set():
            why = "Litestream had not read the database yet: the replica never answered it"
        else:
            why = "Litestream exited without confirming it"
        logger.error(
            "Replication to %s: the final sync at shutdown failed (%s); changes made since "
            "%s may be missing from the replica.",
            url,
            why,
            since_last,
        )
