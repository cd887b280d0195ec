"""Replay a Dockerfile without a Docker engine, as a Hugging Face Space would run it.

`build()` parses the Dockerfile and reproduces its effects in a directory that stands in
for the image's "/": `useradd` makes the user and a HOME it owns, `USER` and `WORKDIR`
change the build state (BuildKit creates a missing WORKDIR owned by the current user),
`COPY` copies from the build context *as filtered by .dockerignore* with the ownership
`--chown` gives (root when there is none), `ENV` sets the environment, and
`pip install -r` is checked against the test venv, which stands in for the image's
site-packages: every pinned version must be the one installed here, and the packages'
console scripts are linked where pip would put them ($HOME/.local/bin for a non-root
user, /usr/local/bin for root). The base image's /usr/local/bin/python is the test
interpreter, laid out as a venv over the same packages. `python -m compileall` runs for
real, as the current user, on what the build copied; on the base image's standard
library (this machine's stands in for it, compiled already) only the permission to write
it is checked. Any other `RUN` is refused, so the replay can never silently skip a step
it does not understand.

`run()` then starts the image's CMD the way a container starts: as the USER's uid
(setpriv), in the WORKDIR, with the image's environment plus the runtime secrets, in a
network namespace of its own (so the port the CMD chooses is really the port it gets,
with no clash with anything on this machine), and checks it over HTTP from inside that
namespace on the port the platform routes to (7860). Paths in the environment resolve
like an overlay: what the build created is found under the replay root, everything
else (the base image's /usr/bin, /tmp…) is this machine's.

`problems()` lists every way the result differs from what a Space needs.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import textwrap
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any

SPACE_UID = 1000
APP_PORT = 7860
BASE_IMAGE = "python:3.11-slim"
BASE_STDLIB = "/usr/local/lib/python3.11"  # root's, in the base image
# What python:3.11-slim itself sets.
BASE_ENV = {
    "PATH": "/usr/local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
}
VENV_BIN = Path(sys.executable).parent


class ReplayError(Exception):
    """The Dockerfile cannot be built (or replayed) as written."""


# -- parsing -----------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    line: int
    keyword: str
    flags: dict[str, str]
    args: str
    exec_form: list[str] | None

    def __str__(self) -> str:
        return f"line {self.line}: {self.keyword} {self.args}"


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with line continuations joined and comments dropped."""
    logical: list[tuple[int, str]] = []
    buffer, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue  # also inside a continuation, as Docker does
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        logical.append((start, buffer + stripped))
        buffer = ""
    if buffer:
        logical.append((start, buffer))

    instructions = []
    for number, line in logical:
        keyword, _, rest = line.partition(" ")
        rest = rest.strip()
        flags: dict[str, str] = {}
        while rest.startswith("--"):
            token, _, rest = rest.partition(" ")
            name, _, value = token[2:].partition("=")
            flags[name] = value
            rest = rest.strip()
        exec_form = None
        if rest.startswith("["):
            try:
                parsed = json.loads(rest)
            except json.JSONDecodeError:
                parsed = None
            if isinstance(parsed, list) and all(isinstance(item, str) for item in parsed):
                exec_form = parsed
        instructions.append(Instruction(number, keyword.upper(), flags, rest, exec_form))
    return instructions


_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::-([^}]*))?\}|(\w+))")


def expand(value: str, env: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match[1] or match[3]
        found = env.get(name, "")
        if match[2] is not None and not found:
            return match[2]
        return found

    return _VARIABLE.sub(replace, value)


# -- .dockerignore (moby's patternmatcher semantics) --------------------------------


@dataclass(frozen=True)
class _Pattern:
    regex: re.Pattern[str]
    exclusion: bool


def read_dockerignore(context: Path) -> list[_Pattern]:
    path = context / ".dockerignore"
    if not path.exists():
        return []
    patterns = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exclusion = line.startswith("!")
        if exclusion:
            line = line[1:].strip()
        line = os.path.normpath(line).replace(os.sep, "/")
        if len(line) > 1 and line.startswith("/"):
            line = line[1:]
        patterns.append(_Pattern(_compile_pattern(line), exclusion))
    return patterns


def _compile_pattern(pattern: str) -> re.Pattern[str]:
    regex, i = "^", 0
    while i < len(pattern):
        char = pattern[i]
        if char == "*":
            if pattern[i + 1 : i + 2] == "*":
                i += 1
                if pattern[i + 1 : i + 2] == "/":
                    i += 1
                regex += ".*" if i + 1 >= len(pattern) else "(.*/)?"
            else:
                regex += "[^/]*"
        elif char == "?":
            regex += "[^/]"
        elif char == "[":
            end = pattern.find("]", i)
            regex += pattern[i : end + 1] if end > i else re.escape(char)
            i = end if end > i else i
        elif char == "\\" and i + 1 < len(pattern):
            i += 1
            regex += re.escape(pattern[i])
        else:
            regex += re.escape(char)
        i += 1
    return re.compile(regex + "$")


def is_ignored(relative: str, patterns: list[_Pattern]) -> bool:
    """moby's MatchesOrParentMatches: a pattern that matches a parent matches the file."""
    parents = relative.split("/")[:-1]
    matched = False
    for pattern in patterns:
        if pattern.exclusion != matched:
            continue
        hit = bool(pattern.regex.match(relative)) or any(
            pattern.regex.match("/".join(parents[: i + 1])) for i in range(len(parents))
        )
        if hit:
            matched = not pattern.exclusion
    return matched


def context_files(context: Path) -> list[str]:
    """Every file of the build context that .dockerignore lets through, relative."""
    patterns = read_dockerignore(context)
    files = []
    for dirpath, dirnames, filenames in os.walk(context):
        dirnames.sort()
        for name in sorted(filenames):
            relative = (Path(dirpath) / name).relative_to(context).as_posix()
            if not is_ignored(relative, patterns):
                files.append(relative)
    return files


# -- building ----------------------------------------------------------------------


@dataclass
class User:
    name: str
    uid: int
    gid: int
    home: str


@dataclass
class Image:
    root: Path
    context: Path
    env: dict[str, str] = field(default_factory=lambda: dict(BASE_ENV))
    uid: int = 0
    gid: int = 0
    workdir: str = "/"
    users: dict[str, User] = field(default_factory=dict)
    exposed: list[int] = field(default_factory=list)
    cmd: list[str] | None = None
    entrypoint: list[str] | None = None
    log: list[str] = field(default_factory=list)

    def host(self, path: str) -> Path:
        """Where an image path lives in the replay root."""
        return self.root / str(PurePosixPath("/", path)).lstrip("/")

    def resolve(self, path: str) -> str:
        """Overlay lookup for a path the running process sees: the build's files first,
        then this machine's (standing in for the base image's)."""
        if not path.startswith("/"):
            return path
        inside = self.host(path)
        return str(inside) if inside.exists() else path

    def absolute(self, path: str) -> str:
        return str(PurePosixPath(self.workdir, path)) if not path.startswith("/") else path

    def owner(self, spec: str) -> tuple[int, int]:
        """`user`, `uid`, `user:group` or `uid:gid`, as --chown and USER take them."""
        name, _, group = expand(spec, self.env).partition(":")
        user = self.users.get(name) or next(
            (u for u in self.users.values() if name.isdigit() and u.uid == int(name)), None
        )
        if user is None and not name.isdigit():
            raise ReplayError(f"unknown user {name!r}")
        uid = user.uid if user else int(name)
        gid = user.gid if user else 0
        if group:
            known = self.users.get(group)
            gid = int(group) if group.isdigit() else known.gid if known else -1
            if gid < 0:
                raise ReplayError(f"unknown group {group!r}")
        return uid, gid

    def make_dirs(self, path: str, uid: int, gid: int) -> None:
        current = PurePosixPath("/")
        for part in PurePosixPath(path).parts[1:]:
            current = current / part
            target = self.host(str(current))
            if not target.exists():
                target.mkdir(mode=0o755)
                target.chmod(0o755)
                os.chown(target, uid, gid)


def build(dockerfile: str, context: Path, root: Path) -> Image:
    """Reproduce the image's filesystem and metadata under `root` (which must exist)."""
    image = Image(root=root, context=context)
    image.users["root"] = User("root", 0, 0, "/root")
    instructions = parse_dockerfile(dockerfile)
    if not instructions or instructions[0].keyword != "FROM":
        raise ReplayError("the Dockerfile must start with FROM")
    for instruction in instructions:
        handler = _HANDLERS.get(instruction.keyword)
        if handler is None:
            raise ReplayError(f"the replay does not know {instruction}")
        handler(image, instruction)
    return image


def _from(image: Image, instruction: Instruction) -> None:
    if image.log:
        raise ReplayError(f"multi-stage builds are not replayed ({instruction})")
    if instruction.args != BASE_IMAGE:
        raise ReplayError(f"the base image must be {BASE_IMAGE}, not {instruction.args}")
    # The base image's interpreter is /usr/local/bin/python. The test venv's stands in,
    # laid out as a venv rooted at /usr/local whose site-packages is the test venv's.
    image.make_dirs("/usr/local/bin", 0, 0)
    image.make_dirs("/usr/local/lib/python3.11", 0, 0)
    for name in ("python", "python3", "python3.11"):
        image.host(f"/usr/local/bin/{name}").symlink_to(VENV_BIN / "python")
    shutil.copyfile(VENV_BIN.parent / "pyvenv.cfg", image.host("/usr/local/pyvenv.cfg"))
    image.host("/usr/local/lib/python3.11/site-packages").symlink_to(
        sysconfig.get_paths()["purelib"]
    )
    image.log.append(f"FROM {instruction.args}")


def _run(image: Image, instruction: Instruction) -> None:
    if instruction.exec_form is not None:
        commands = [instruction.exec_form]
    else:
        commands = [shlex.split(part) for part in instruction.args.split("&&")]
    for argv in commands:
        argv = [expand(arg, image.env) for arg in argv]
        if argv[:1] == ["useradd"]:
            _useradd(image, argv[1:])
        elif argv[:2] == ["mkdir", "-p"] and len(argv) > 2:
            for path in argv[2:]:
                image.make_dirs(image.absolute(path), image.uid, image.gid)
        elif argv[:2] in (["pip", "install"], ["pip3", "install"]) or argv[:4] == [
            "python",
            "-m",
            "pip",
            "install",
        ]:
            _pip_install(image, argv[argv.index("install") + 1 :])
        elif argv[:3] == ["python", "-m", "compileall"]:
            _compileall(image, argv[3:])
        else:
            raise ReplayError(f"the replay does not know how to run {shlex.join(argv)!r}")
    image.log.append(f"RUN {instruction.args}")


def _useradd(image: Image, args: list[str]) -> None:
    create_home, uid, home, name = False, None, None, None
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-m", "--create-home"):
            create_home = True
        elif arg in ("-u", "--uid"):
            i += 1
            uid = int(args[i])
        elif arg in ("-d", "--home-dir"):
            i += 1
            home = args[i]
        elif arg in ("-s", "--shell"):
            i += 1
        elif arg.startswith("-"):
            raise ReplayError(f"useradd option {arg} is not replayed")
        else:
            name = arg
        i += 1
    if name is None:
        raise ReplayError("useradd without a user name")
    if uid is None:  # Debian: the first free uid from UID_MIN (1000)
        taken = {user.uid for user in image.users.values()}
        uid = next(n for n in range(1000, 60000) if n not in taken)
    home = home or f"/home/{name}"
    image.users[name] = User(name, uid, uid, home)
    if create_home:
        image.make_dirs(str(PurePosixPath(home).parent), 0, 0)
        target = image.host(home)
        target.mkdir(mode=0o750)
        os.chown(target, uid, uid)


def _pip_install(image: Image, args: list[str]) -> None:
    requirement_files = [
        args[i + 1] for i, arg in enumerate(args) if arg in ("-r", "--requirement")
    ]
    if not requirement_files or any(
        not a.startswith("-") for a in args if a not in requirement_files
    ):
        raise ReplayError(f"only `pip install -r FILE` is replayed, not {args}")
    # As a non-root user the image's site-packages is read-only: pip installs for the user.
    user_install = image.uid != 0 or "--user" in args
    home = image.env.get("HOME") or _home_of(image, image.uid)
    bin_dir = f"{home}/.local/bin" if user_install else "/usr/local/bin"
    for name in requirement_files:
        path = image.host(image.absolute(name))
        if not path.is_file():
            raise ReplayError(f"pip install -r {name}: not in the image at {image.workdir}")
        for requirement in _pinned(path):
            _link_console_scripts(image, requirement, bin_dir)


def _compileall(image: Image, args: list[str]) -> None:
    paths, i = [], 0
    while i < len(args):
        if args[i] == "-j":
            i += 1
        elif args[i] != "-q" and args[i].startswith("-"):
            raise ReplayError(f"compileall option {args[i]} is not replayed")
        elif args[i] != "-q":
            paths.append(args[i])
        i += 1
    if not paths:
        raise ReplayError("compileall without a path")
    ours = []
    for path in paths:
        absolute = image.absolute(path)
        if absolute == BASE_STDLIB or absolute.startswith(BASE_STDLIB + "/"):
            if image.uid != 0:
                raise ReplayError(
                    f"compileall {path}: the base image's files are root's; uid {image.uid} "
                    "cannot write bytecode beside them (compile before USER)"
                )
            continue
        if not image.host(absolute).exists():
            raise ReplayError(f"compileall {path}: not in the image")
        ours.append(str(image.host(absolute)))
    if not ours:
        return
    as_user = (
        [_tool("setpriv"), f"--reuid={image.uid}", f"--regid={image.gid}", "--clear-groups"]
        if image.uid != 0
        else []
    )
    done = subprocess.run(
        [*as_user, str(VENV_BIN / "python"), "-m", "compileall", "-q", *ours],
        cwd=image.host(image.workdir),
        env={"PATH": BASE_ENV["PATH"], "LANG": "C.UTF-8"},
        capture_output=True,
        text=True,
    )
    output = done.stdout + done.stderr
    if "Permission denied" in output:
        raise ReplayError(
            f"compileall as uid {image.uid} cannot write bytecode beside {' '.join(paths)}: "
            f"they are not owned by uid {image.uid} (COPY --chown)"
        )
    # compileall reports a directory it cannot list, and still exits 0.
    if done.returncode != 0 or "Can't list" in output:
        raise ReplayError(f"compileall failed:\n{output[-2000:]}")


def _pinned(path: Path) -> list[tuple[str, str]]:
    pins = []
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?==([^\s;]+)", line)
        if match is None:
            raise ReplayError(f"{path.name}: {line!r} is not pinned with ==")
        pins.append((match[1], match[3]))
    return pins


def _link_console_scripts(image: Image, requirement: tuple[str, str], bin_dir: str) -> None:
    name, version = requirement
    try:
        installed = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        raise ReplayError(f"{name} is pinned but not installed in the test venv") from None
    if installed.version != version:
        raise ReplayError(
            f"{name}: the image gets {version}, the test venv standing in for it has "
            f"{installed.version}"
        )
    for entry in installed.entry_points:
        if entry.group != "console_scripts":
            continue
        image.make_dirs(bin_dir, image.uid, image.gid)
        link = image.host(f"{bin_dir}/{entry.name}")
        if not link.exists():
            link.symlink_to(VENV_BIN / entry.name)
            os.lchown(link, image.uid, image.gid)


def _home_of(image: Image, uid: int) -> str:
    return next((u.home for u in image.users.values() if u.uid == uid), "/")


def _user(image: Image, instruction: Instruction) -> None:
    image.uid, image.gid = image.owner(instruction.args)
    image.log.append(f"USER {instruction.args}")


def _env(image: Image, instruction: Instruction) -> None:
    before = dict(image.env)  # one ENV's values see the environment from before it
    tokens = shlex.split(instruction.args)
    if tokens and "=" not in tokens[0]:
        key, _, value = instruction.args.partition(" ")
        image.env[key] = expand(value.strip(), before)
    else:
        for token in tokens:
            key, _, value = token.partition("=")
            image.env[key] = expand(value, before)
    image.log.append(f"ENV {instruction.args}")


def _workdir(image: Image, instruction: Instruction) -> None:
    image.workdir = image.absolute(expand(instruction.args, image.env))
    # BuildKit creates a missing WORKDIR owned by the current USER.
    image.make_dirs(image.workdir, image.uid, image.gid)
    image.log.append(f"WORKDIR {image.workdir}")


def _copy(image: Image, instruction: Instruction) -> None:
    unknown = set(instruction.flags) - {"chown", "chmod"}
    if unknown:
        raise ReplayError(f"COPY --{unknown.pop()} is not replayed ({instruction})")
    uid, gid = image.owner(instruction.flags["chown"]) if "chown" in instruction.flags else (0, 0)
    items = instruction.exec_form or shlex.split(instruction.args)
    items = [expand(item, image.env) for item in items]
    *sources, destination = items
    destination = image.absolute(destination)
    into_directory = destination.endswith("/") or len(sources) > 1
    available = context_files(image.context)
    for source in sources:
        prefix = os.path.normpath(source).lstrip("/")
        if prefix == ".":
            chosen = [(name, name) for name in available]
            into_directory = True
        elif prefix in available:
            chosen = [(prefix, PurePosixPath(prefix).name)]
        else:
            chosen = [(n, n[len(prefix) + 1 :]) for n in available if n.startswith(prefix + "/")]
            into_directory = True
        if not chosen:
            raise ReplayError(
                f"COPY {source}: not in the build context or excluded by .dockerignore"
            )
        if not into_directory and image.host(destination).is_dir():
            into_directory = True
        for name, relative in chosen:
            target = str(PurePosixPath(destination, relative)) if into_directory else destination
            image.make_dirs(str(PurePosixPath(target).parent), uid, gid)
            host_target = image.host(target)
            shutil.copyfile(image.context / name, host_target)
            mode = stat.S_IMODE((image.context / name).stat().st_mode)
            if "chmod" in instruction.flags:
                mode = int(instruction.flags["chmod"], 8)
            host_target.chmod(mode)
            os.chown(host_target, uid, gid)
    image.log.append(f"COPY {instruction.args} (as {uid}:{gid})")


def _expose(image: Image, instruction: Instruction) -> None:
    for item in expand(instruction.args, image.env).split():
        image.exposed.append(int(item.split("/")[0]))


def _cmd(image: Image, instruction: Instruction) -> None:
    image.cmd = instruction.exec_form or ["/bin/sh", "-c", instruction.args]


def _entrypoint(image: Image, instruction: Instruction) -> None:
    image.entrypoint = instruction.exec_form or ["/bin/sh", "-c", instruction.args]


def _ignore(image: Image, instruction: Instruction) -> None:
    image.log.append(f"{instruction.keyword} {instruction.args} (metadata only)")


_HANDLERS = {
    "FROM": _from,
    "RUN": _run,
    "USER": _user,
    "ENV": _env,
    "WORKDIR": _workdir,
    "COPY": _copy,
    "EXPOSE": _expose,
    "CMD": _cmd,
    "ENTRYPOINT": _entrypoint,
    "LABEL": _ignore,
}


# -- running -----------------------------------------------------------------------


@dataclass
class Run:
    image: Image
    argv: list[str]
    env: dict[str, str]
    cwd: str
    process_uid: int | None = None
    listeners: list[tuple[str, int]] = field(default_factory=list)
    not_owned: list[str] = field(default_factory=list)
    http: dict[str, Any] = field(default_factory=dict)
    command_path: str | None = None
    app_entries: list[str] = field(default_factory=list)  # WORKDIR's top level, after the run
    exit_code: int | None = None
    log: str = ""

    @property
    def app_dir(self) -> Path:
        return self.image.host(self.image.workdir)


# Runs inside the server's network namespace (as root: it plays the Space's proxy).
_CHECKER = textwrap.dedent(
    """
    import json, sys, time
    import httpx2 as httpx

    args = json.loads(sys.argv[1])
    base = f"http://127.0.0.1:{args['port']}"
    out = {}

    def record(name, response=None, error=None, **extra):
        entry = {"status": None if response is None else response.status_code, **extra}
        if error is not None:
            entry["error"] = error
        out[name] = entry
        return entry

    client = httpx.Client(base_url=base, timeout=10)
    deadline = time.monotonic() + args["wait"]
    while True:
        try:
            health = client.get("/health")
            break
        except httpx.HTTPError as exc:
            if time.monotonic() > deadline:
                record("health", error=f"nothing answers on port {args['port']}: {exc!r}")
                print(json.dumps(out))
                raise SystemExit(0)
            time.sleep(0.1)
    record("health", health, body=health.json())
    ready = client.get("/ready")
    while ready.status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
        ready = client.get("/ready")
    record("ready", ready, body=ready.json())
    page = client.get("/", headers={"Accept": "text/html"})
    record("root_html", page, content_type=page.headers.get("content-type"), body=page.text)
    facts = client.get("/", headers={"Accept": "application/json"})
    record("root_json", facts, body=facts.json() if facts.status_code == 200 else facts.text)
    head = client.head("/")
    record("root_head", head)
    # Behind the Space's proxy, the client is the one it names (uvicorn --proxy-headers).
    forwarded = client.get("/health", headers={"X-Forwarded-For": "203.0.113.9"})
    record("proxy_headers", forwarded)
    auth = {"Authorization": f"Bearer {args['token']}"}
    path = f"/api/{args['user']}/tasks"
    created = client.post(path, json={"title": "from the replay"}, headers=auth)
    body = created.json() if created.headers.get("content-type", "").startswith(
        "application/json") else created.text
    record("task_create", created, body=body)
    if created.status_code == 201:
        task_id = body["id"]
        one = client.get(f"{path}/{task_id}", headers=auth)
        listed = client.get(path, headers=auth)
        record("task_read", one, body=one.json())
        record("task_list", listed, ids=[t["id"] for t in listed.json()])
    print(json.dumps(out))
    """
)


def run(
    image: Image,
    *,
    runtime_env: dict[str, str],
    token: str,
    user: str,
    start_timeout: float = 30,
) -> Run:
    """Start the image's CMD as a container would, check it, stop it with SIGTERM."""
    if image.cmd is None and image.entrypoint is None:
        raise ReplayError("the Dockerfile has neither CMD nor ENTRYPOINT")
    argv = (image.entrypoint or []) + (image.cmd or [])
    env = {key: _resolve_paths(image, value) for key, value in image.env.items()}
    env.setdefault("HOME", image.resolve(_home_of(image, image.uid)))
    env["HOSTNAME"] = "replay"
    env.update(runtime_env)
    result = Run(image=image, argv=argv, env=env, cwd=str(image.host(image.workdir)))
    result.command_path = shutil.which(argv[0], path=env.get("PATH", ""))
    result.not_owned = _not_owned_by(result.app_dir, SPACE_UID)

    as_user = (
        [_tool("setpriv"), f"--reuid={image.uid}", f"--regid={image.gid}", "--clear-groups"]
        if image.uid != 0
        else []
    )
    wrapper = [
        _tool("unshare"),
        "--net",
        "--",
        "/bin/sh",
        "-c",
        f'{_tool("ip")} link set lo up && exec "$@"',
        "replay",
        *as_user,
        # The program as the runtime finds it in the image's PATH. Passed by that path,
        # not by name: the stand-in interpreter's symlinks end under /root on this
        # machine, which uid 1000 cannot search, so a lookup by name as that user fails
        # (and Python, not finding itself, would lose its venv layout).
        result.command_path or argv[0],
        *argv[1:],
    ]
    log_path = image.root.parent / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            wrapper,
            cwd=result.cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            umask=0o022,
        )
    try:
        result.listeners = _wait_for_listeners(process, start_timeout)
        result.process_uid = _uid_of(process.pid)
        if process.poll() is None:
            result.http = _check_http(process.pid, token=token, user=user)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        result.exit_code = process.returncode
        result.log = log_path.read_text(errors="replace")
        result.app_entries = sorted(path.name for path in result.app_dir.iterdir())
    return result


def _resolve_paths(image: Image, value: str) -> str:
    parts = value.split(":")
    if all(part.startswith("/") for part in parts):
        return ":".join(image.resolve(part) for part in parts)
    return value


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is None:
        raise ReplayError(f"{name} is needed to replay the image")
    return found


def _not_owned_by(app_dir: Path, uid: int) -> list[str]:
    wrong = []
    for path in [app_dir, *sorted(app_dir.rglob("*"))]:
        owner = path.lstat().st_uid
        if owner != uid:
            wrong.append(f"{path.relative_to(app_dir.parent)} (uid {owner})")
    return wrong


def _uid_of(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _wait_for_listeners(process: subprocess.Popen[bytes], timeout: float) -> list[tuple[str, int]]:
    deadline = time.monotonic() + timeout
    own_namespace = os.readlink("/proc/self/ns/net")
    while time.monotonic() < deadline and process.poll() is None:
        try:
            moved = os.readlink(f"/proc/{process.pid}/ns/net") != own_namespace
        except OSError:
            moved = False
        # Until `unshare` has run, the process still sees this machine's sockets.
        listeners = read_listeners(process.pid) if moved else []
        if listeners:
            return listeners
        time.sleep(0.05)
    return []


def read_listeners(pid: int) -> list[tuple[str, int]]:
    """Listening TCP sockets in the network namespace of `pid`, as (address, port)."""
    found = []
    for name in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] != "0A":  # TCP_LISTEN
                continue
            address, port = fields[1].split(":")
            found.append((_decode_address(address), int(port, 16)))
    return sorted(set(found))


def _decode_address(hexed: str) -> str:
    raw = bytes.fromhex(hexed)
    if len(raw) == 4:
        return ".".join(str(b) for b in raw[::-1])
    words = [raw[i : i + 4][::-1] for i in range(0, 16, 4)]
    groups = b"".join(words)
    text = ":".join(groups[i : i + 2].hex() for i in range(0, 16, 2))
    return "::" if set(groups) == {0} else text


def _check_http(pid: int, *, token: str, user: str) -> dict[str, Any]:
    if not any(port == APP_PORT for _, port in read_listeners(pid)):
        return {}  # nothing to talk to; `problems()` says what listens instead
    args = json.dumps({"port": APP_PORT, "token": token, "user": user, "wait": 30})
    done = subprocess.run(
        [_tool("nsenter"), f"--net=/proc/{pid}/ns/net", sys.executable, "-c", _CHECKER, args],
        capture_output=True,
        text=True,
        timeout=90,
    )
    if done.returncode != 0:
        raise ReplayError(f"the HTTP checker failed:\n{done.stderr[-3000:]}")
    checked: dict[str, Any] = json.loads(done.stdout)
    return checked


# -- verdict -----------------------------------------------------------------------


def problems(result: Run, *, include_tasks: bool = True) -> list[str]:
    """Everything that would go wrong (or differ from the platform's rules) on a Space."""
    image, found = result.image, []
    if result.command_path is None:
        found.append(f"{result.argv[0]!r} (the CMD) is not on the image's PATH")
    if image.uid != SPACE_UID:
        found.append(
            f"the image's USER is uid {image.uid}; a Space runs the container as uid "
            f"{SPACE_UID} (USER must name it)"
        )
    if result.process_uid is not None and result.process_uid != SPACE_UID:
        found.append(f"the server process runs as uid {result.process_uid}, not {SPACE_UID}")
    if result.not_owned:
        sample = ", ".join(result.not_owned[:3])
        found.append(
            f"{len(result.not_owned)} paths in the WORKDIR are not owned by uid {SPACE_UID} "
            f"(e.g. {sample}); Dev Mode needs the app owned by it: COPY --chown"
        )
    if APP_PORT not in image.exposed:
        found.append(f"EXPOSE does not declare {APP_PORT} (app_port), only {image.exposed}")
    public = [(a, p) for a, p in result.listeners if p == APP_PORT and a in ("0.0.0.0", "::")]
    if not public:
        shown = ", ".join(f"{a}:{p}" for a, p in result.listeners) or "nothing"
        found.append(
            f"the server must listen on 0.0.0.0:{APP_PORT} (all interfaces, app_port); "
            f"it listens on {shown}"
        )
    expected = {
        "health": 200,
        "ready": 200,
        "root_html": 200,
        "root_json": 200,
        "root_head": 200,
        "proxy_headers": 200,
    }
    if include_tasks:
        expected.update({"task_create": 201, "task_read": 200, "task_list": 200})
    if result.http:
        for name, status in expected.items():
            entry = result.http.get(name)
            if entry is None:
                found.append(f"{name}: not checked (an earlier check failed)")
            elif entry.get("status") != status:
                found.append(f"{name}: expected HTTP {status}, got {entry}")
        if "203.0.113.9" not in result.log:
            found.append("X-Forwarded-For is ignored: the access log does not name the client")
    elif public:
        found.append("the HTTP checks did not run")
    # Uvicorn re-raises the SIGTERM it handled once shutdown is complete.
    if result.exit_code not in (0, -signal.SIGTERM, None) or (
        result.http and "Application shutdown complete" not in result.log
    ):
        found.append(f"no clean shutdown on SIGTERM (exit {result.exit_code})")
    return found
