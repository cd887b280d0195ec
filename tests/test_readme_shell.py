"""Every shell block of README.md, run as a new user would run it: from a checkout, against
a live server (a subprocess, on SQLite), with a throwaway HOME and working directory.

How a block is run:
* The blocks are ```bash (or sh, shell, console, zsh) fences, taken in README order and
  run one after the other by bash with `set -euo pipefail`; variables a block sets (such
  as TOKEN, API, ID) are there for the next one, as in one terminal.
* The working directory is a fresh copy of the checkout (src/, scripts/, alembic/, …; its
  .venv is the suite's own, already set up), so `./scripts/token` and
  `.venv/bin/python -m src …` work as they do for a user. `http://localhost:7860` is the
  live server's address.
* Every `curl` a block runs is recorded, and its HTTP status must be the one the README
  gives in a `# → 201` comment at the end of that command, in order. A block fails when
  a command fails.
* Whatever the blocks leave in the checkout (an export, a replica) must be in .gitignore.
* A block that cannot run here (it needs Docker, or pushes to huggingface.co) starts with
  `# not run by the tests: <why>`. An unmarked block that needs such things fails the
  suite (`test_blocks_that_cannot_run_here_are_marked`).

To run a block differently, add a `BlockSpec` to SPECS: the text that identifies the
block, extra environment for it (`env`), or a server of its own started with extra
environment (`server_env`, e.g. for a replica or an import), and output it must print.
Values may use `{workdir}`, `{home}` and `{api}`.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.server import ROOT, Server, clean_env, run_server

README = ROOT / "README.md"
SHELLS = {"bash", "sh", "shell", "console", "zsh"}
FENCE = re.compile(r"^( *)```([\w-]*)[^\n]*\n(.*?)^\1```[ \t]*$", re.M | re.S)
MARKER = re.compile(r"^# not run by the tests: (\S.*)$")
EXPECTED_STATUS = re.compile(r"#\s*→\s*(\d{3})\b")
README_ADDRESS = "http://localhost:7860"
# What cannot run here, and so must be marked.
CANNOT_RUN = {
    r"(^|[\s;&|(])docker\s": "needs Docker",
    r"git\s+push|huggingface\.co": "pushes to huggingface.co",
    r"(^|[\s;&|(])(\./scripts/serve|python -m src serve)(\s|$)(?!.*&\s*$)": "starts a server",
}
CHECKOUT = ("src", "scripts", "alembic", "alembic.ini", "requirements.txt", "pyproject.toml")
CHECKOUT += ("requirements-dev.txt",)


@dataclass(frozen=True)
class BlockSpec:
    """How to run the README block whose text contains `match`."""

    match: str
    env: Mapping[str, str] = field(default_factory=dict)
    server_env: Mapping[str, str] | None = None  # its own server, with this extra env
    output: tuple[str, ...] = ()  # regexes its output (stdout + stderr) must match


SPECS: tuple[BlockSpec, ...] = (
    BlockSpec(
        "Access-Control-Request-Method",
        server_env={"CORS_ORIGINS": "https://my-app.vercel.app/"},
        output=(r"(?im)^access-control-allow-origin: https://my-app\.vercel\.app\r?$",),
    ),
    BlockSpec(
        '["replication"]',
        server_env={"SQLITE_REPLICA_URL": "file://{workdir}/replica"},
        output=(r"(?m)^replicating file://.*/replica$",),
    ),
    BlockSpec(
        "copy --from",
        env={"NEW_DATABASE_URL": "{pg_url}"},
        output=(r"inserted|copied|\d+ task",),
    ),
    BlockSpec("export --output", output=(r"(?i)\d+ task",)),
    # The walkthrough's output is what its comments show: bodies, then the status.
    BlockSpec(
        "CREATED=$(curl",
        output=(
            r'(?m)^\{"id":"[0-9a-f-]{36}","title":"Buy milk",.*\}\n201$',
            r'(?m)^\[\{"id":.*"title":"Buy milk".*\}\] 200$',
            r"(?m)^ 204$",
            r'(?m)^\{"error":"No such task\.","code":"TASK_NOT_FOUND"\} 404$',
        ),
    ),
)


@dataclass(frozen=True)
class Block:
    number: int
    line: int  # where it starts in README.md
    language: str
    text: str

    @property
    def marker(self) -> str | None:
        first = self.text.splitlines()[0] if self.text.strip() else ""
        match = MARKER.match(first.strip())
        return match[1] if match else None

    @property
    def spec(self) -> BlockSpec:
        specs = [spec for spec in SPECS if spec.match in self.text]
        assert len(specs) <= 1, f"block at README.md:{self.line} matches several BlockSpecs"
        return specs[0] if specs else BlockSpec("")

    def commands(self) -> list[str]:
        """The logical command lines (backslash continuations joined)."""
        joined = re.sub(r"\\\n", " ", self.text)
        return [line.strip() for line in joined.splitlines() if line.strip()]

    def expected_statuses(self) -> list[str]:
        expected = []
        for command in self.commands():
            if command.startswith("#") or not re.search(r"(^|[\s$(|])curl\s", command):
                continue
            found = EXPECTED_STATUS.search(command)
            assert found, (
                f"README.md:{self.line}: this curl gives no `# → <status>` comment: {command}"
            )
            expected.append(found[1])
        return expected


def shell_blocks() -> list[Block]:
    text = README.read_text(encoding="utf-8")
    blocks = []
    for match in FENCE.finditer(text):
        if match[2] not in SHELLS:
            continue
        indent = len(match[1])
        body = "\n".join(line[indent:] for line in match[3].splitlines())
        line = text.count("\n", 0, match.start()) + 1
        blocks.append(Block(len(blocks) + 1, line, match[2], body + "\n"))
    return blocks


# -- the static checks --------------------------------------------------------------------


def test_the_readme_has_shell_blocks_and_marks_are_explained() -> None:
    blocks = shell_blocks()
    assert len(blocks) >= 4
    runnable = [b for b in blocks if b.marker is None]
    assert runnable, "no block is run"
    for block in blocks:
        if block.marker is not None:
            assert len(block.marker) >= 10, f"README.md:{block.line}: say why it is not run"


def test_blocks_that_cannot_run_here_are_marked() -> None:
    unmarked = []
    for block in shell_blocks():
        if block.marker is not None:
            continue
        for pattern, why in CANNOT_RUN.items():
            if any(re.search(pattern, c) for c in block.commands() if not c.startswith("#")):
                unmarked.append(
                    f"README.md:{block.line} {why}: start it with '# not run by the tests: {why}'"
                )
    assert unmarked == []


def test_specs_match_blocks() -> None:
    texts = [block.text for block in shell_blocks()]
    for spec in SPECS:
        assert sum(spec.match in text for text in texts) == 1, spec.match


# -- running them ------------------------------------------------------------------------

PRELUDE = r"""
set -euo pipefail
__names_before=$(compgen -v)
source "$README_STATE"
curl() {
    local headers rc=0
    headers=$(mktemp)
    command curl -D "$headers" "$@" || rc=$?
    { grep -E '^HTTP/' "$headers" | tail -1 | cut -d' ' -f2; } >> "$README_STATUSES" || true
    rm -f "$headers"
    return "$rc"
}
"""
EPILOGUE = r"""
: > "$README_STATE.next"
for __name in $(compgen -v | grep -vxF -e "$__names_before" -e __name -e __names_before); do
    declare -p "$__name" 2>/dev/null >> "$README_STATE.next" || true
done
mv "$README_STATE.next" "$README_STATE"
"""


@dataclass
class Sandbox:
    """A throwaway checkout and HOME: where the blocks run, and where the server keeps its
    SQLite file and generated secret (./data, as from a real checkout)."""

    workdir: Path
    home: Path
    state: Path
    statuses: Path

    @classmethod
    def create(cls, base: Path) -> Sandbox:
        workdir, home = base / "checkout", base / "home"
        home.mkdir(parents=True)
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "node_modules", "data")
        for name in CHECKOUT:
            source = ROOT / name
            if source.is_dir():
                shutil.copytree(source, workdir / name, ignore=ignore)
            else:
                workdir.mkdir(exist_ok=True)
                shutil.copy2(source, workdir / name)
        _link_venv(workdir / ".venv")
        state = base / "state.sh"
        state.write_text("")
        return cls(workdir, home, state, base / "statuses")

    pg_url: str = ""

    def env(self, api: str, extra: Mapping[str, str] = {}) -> dict[str, str]:
        values = {
            "workdir": str(self.workdir),
            "home": str(self.home),
            "api": api,
            "pg_url": self.pg_url,
        }
        env = clean_env(HOME=str(self.home))
        for name in ("VIRTUAL_ENV", "PYTHONPATH", "CORS_ORIGINS", "LOG_FORMAT", "LOG_LEVEL"):
            env.pop(name, None)
        env["PATH"] = os.environ.get("PATH", "/usr/bin:/bin")
        env.update({name: value.format(**values) for name, value in extra.items()})
        return env


def _link_venv(target: Path) -> None:
    """A .venv that is the suite's own interpreter, marked as installed for the current
    requirements, as scripts/_venv.sh marks it (so it installs nothing)."""
    real = ROOT / ".venv" / "bin" / "python"
    (target / "bin").mkdir(parents=True)
    wrapper = target / "bin" / "python"
    wrapper.write_text(f'#!/bin/sh\nexec "{real}" "$@"\n')
    wrapper.chmod(0o755)
    digest = subprocess.run(
        ["bash", "-c", "cat requirements*.txt | sha256sum | cut -d' ' -f1"],  # as _venv.sh
        cwd=target.parent,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for requirements in target.parent.glob("requirements*.txt"):
        (target / f".installed-{requirements.name}").write_text(digest)


class LiveServer:
    """One server at a time on the sandbox's data, as a user runs it: the default one, or
    one started with a block's extra environment (then the default one again)."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self._stack = contextlib.ExitStack()
        self._env: Mapping[str, str] | None = None
        self.server: Server | None = None

    def with_env(self, extra: Mapping[str, str] | None) -> Server:
        extra = extra or {}
        if self.server is None or self._env != extra:
            self.close()
            env = self.sandbox.env(README_ADDRESS, extra)
            if Path("/data").exists():  # the app would choose it: keep the data here
                env["SQLITE_PATH"] = str(self.sandbox.workdir / "data" / "todo.db")
            self.server = self._stack.enter_context(run_server(env, cwd=self.sandbox.workdir))
            self.server.wait_ready()
            self._env = extra
        return self.server

    def close(self) -> None:
        self._stack.close()
        self._stack = contextlib.ExitStack()
        self.server = None


def run_block(block: Block, sandbox: Sandbox, server: Server) -> subprocess.CompletedProcess[str]:
    sandbox.statuses.write_text("")
    env = sandbox.env(server.base_url, block.spec.env)
    env["README_STATE"], env["README_STATUSES"] = str(sandbox.state), str(sandbox.statuses)
    script = PRELUDE + block.text.replace(README_ADDRESS, server.base_url) + EPILOGUE
    return subprocess.run(
        ["bash", "-c", script],
        cwd=sandbox.workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def sandbox(tmp_path: Path, pg_url: str) -> Iterator[Sandbox]:
    created = Sandbox.create(tmp_path)
    created.pg_url = pg_url  # a fresh PostgreSQL database, for the `copy` example
    yield created


def test_the_readme_shell_blocks_work(sandbox: Sandbox) -> None:
    live = LiveServer(sandbox)
    ran = 0
    try:
        for block in shell_blocks():
            if block.marker is not None:
                continue
            server = live.with_env(block.spec.server_env)
            result = run_block(block, sandbox, server)
            output = result.stdout + result.stderr
            where = f"README.md:{block.line} (block {block.number})"
            context = (
                f"{where}\n--- output:\n{output[-3000:]}\n--- server:\n{server.logs()[-2000:]}"
            )
            assert result.returncode == 0, f"exit {result.returncode}: {context}"
            statuses = sandbox.statuses.read_text().split()
            assert statuses == block.expected_statuses(), f"HTTP statuses: {context}"
            for pattern in block.spec.output:
                assert re.search(pattern, output), f"no {pattern!r} in the output: {context}"
            ran += 1
    finally:
        live.close()
    assert ran >= 3
    assert _not_ignored(sandbox.workdir) == [], "files the README's examples leave in a checkout"


def _not_ignored(workdir: Path) -> list[str]:
    """What the blocks created in the checkout that its .gitignore does not cover."""
    created = [
        path.name
        for path in sorted(workdir.iterdir())
        # The checkout itself, and the test servers' logs (tests/server.py), are not the
        # examples' doing.
        if path.name not in CHECKOUT
        and path.name != ".venv"
        and not re.fullmatch(r"server-\d+\.log", path.name)
    ]
    shutil.copy2(ROOT / ".gitignore", workdir / ".gitignore")
    subprocess.run(["git", "init", "-q"], cwd=workdir, check=True)
    return [
        name
        for name in created
        if subprocess.run(["git", "check-ignore", "-q", name], cwd=workdir).returncode != 0
    ]
