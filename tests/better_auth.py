"""A real Better Auth server (tests/betterauth/server.mjs, run by Node) and its users, for
the end-to-end tests. No mock: the same npm packages a Next.js frontend uses, pinned in
tests/betterauth/package-lock.json.

`ensure_node_modules()` installs them with `npm ci` when node_modules is missing or does
not match the lock file (so `./scripts/test` works on a fresh checkout), and fails with
what to do when it cannot.
"""

from __future__ import annotations

import json
import selectors
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2 as httpx

from tests.server import ROOT, clean_env, stop

PACKAGE_DIR = ROOT / "tests" / "betterauth"
NODE_MAJOR_MIN = 20
NATIVE_MODULE = PACKAGE_DIR / "node_modules/better-sqlite3/build/Release/better_sqlite3.node"
PASSWORD = "correct horse battery 42"
INSTALL_HINT = (
    "The Better Auth end-to-end tests need Node.js 20 or newer with npm (on Debian from "
    "NodeSource: bookworm's own nodejs is 18) and the packages of tests/betterauth, "
    "installed with: (cd tests/betterauth && npm ci)"
)


class SetupError(Exception):
    """Node or the npm packages are not usable; the message says what to do."""


def installed_problem() -> str | None:
    """Why node_modules does not match package-lock.json, or None when it does."""
    hidden = PACKAGE_DIR / "node_modules" / ".package-lock.json"
    if not hidden.exists():
        return "tests/betterauth/node_modules is missing"
    wanted = json.loads((PACKAGE_DIR / "package-lock.json").read_text())["packages"]
    installed = json.loads(hidden.read_text()).get("packages", {})
    for path, meta in wanted.items():
        if path and installed.get(path, {}).get("version") != meta.get("version"):
            return f"tests/betterauth/{path} is not version {meta.get('version')} (stale install)"
    if not NATIVE_MODULE.exists():
        return "better-sqlite3's native module was not built (install scripts skipped?)"
    return None


def ensure_node_modules() -> None:
    """Raises SetupError when Node is missing or `npm ci` cannot install the packages."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise SetupError(f"node or npm is not on PATH. {INSTALL_HINT}")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=False)
    major = version.stdout.strip().lstrip("v").split(".")[0]
    if not major.isdigit() or int(major) < NODE_MAJOR_MIN:
        raise SetupError(f"Node.js {version.stdout.strip() or '?'} is too old. {INSTALL_HINT}")
    problem = installed_problem()
    if problem is None:
        return
    result = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"],
        cwd=PACKAGE_DIR,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    still = installed_problem()
    if result.returncode != 0 or still is not None:
        output = (result.stdout + result.stderr)[-2000:]
        raise SetupError(
            f"{problem}; `npm ci` in tests/betterauth did not fix it "
            f"(exit {result.returncode}{'; ' + still if still else ''}):\n{output}\n{INSTALL_HINT}"
        )


@dataclass
class User:
    """A Better Auth user signed in over HTTP, with the session cookie."""

    server: BetterAuth
    id: str
    email: str
    cookie: str

    def _get(self, path: str) -> httpx.Response:
        response = httpx.get(self.server.url + path, headers={"cookie": self.cookie}, timeout=10)
        assert response.status_code == 200, (path, response.text)
        return response

    def token(self) -> str:
        """A JWT from `GET /api/auth/token` (what `authClient.token()` calls)."""
        token: str = self._get("/api/auth/token").json()["token"]
        return token

    def session_jwt(self) -> str:
        """The JWT in the `set-auth-jwt` header of `GET /api/auth/get-session`."""
        return self._get("/api/auth/get-session").headers["set-auth-jwt"]


@dataclass
class BetterAuth:
    """`node server.mjs` with one key algorithm; `start()` again reuses port and database."""

    workdir: Path
    alg: str = "EdDSA"
    rotation: int | None = None
    port: int = 0
    secret: str = field(default_factory=lambda: f"ba-{uuid.uuid4().hex}{uuid.uuid4().hex}")
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20) -> BetterAuth:
        argv = ["node", "server.mjs", "--port", str(self.port), "--alg", self.alg]
        argv += ["--db", str(self.workdir / f"better-auth-{self.alg}.db")]
        if self.rotation is not None:
            argv += ["--rotation", str(self.rotation)]
        log = (self.workdir / f"better-auth-{self.alg}.log").open("ab")
        self.process = subprocess.Popen(
            argv,
            cwd=PACKAGE_DIR,
            env=clean_env(BETTER_AUTH_SECRET=self.secret),
            stdout=subprocess.PIPE,
            stderr=log,
        )
        log.close()
        line = self._first_line(timeout)
        self.port = int(json.loads(line)["url"].rsplit(":", 1)[1])
        return self

    def _first_line(self, timeout: float) -> bytes:
        assert self.process is not None and self.process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            if not selector.select(timeout):
                stop(self.process)
                raise AssertionError(f"Better Auth did not start in {timeout}s: {self.logs()}")
        line = self.process.stdout.readline()
        if not line:
            raise AssertionError(f"Better Auth exited {self.process.wait()}: {self.logs()}")
        return line

    def logs(self) -> str:
        path = self.workdir / f"better-auth-{self.alg}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)
            self.process = None

    # -- what a frontend does -----------------------------------------------------

    def _post(self, path: str, body: dict[str, Any], cookie: str = "") -> httpx.Response:
        # A browser sends its page's Origin; Better Auth checks it on cookie-bearing POSTs.
        headers = {"origin": self.url, **({"cookie": cookie} if cookie else {})}
        return httpx.post(self.url + path, json=body, headers=headers, timeout=10)

    def sign_up(self, name: str) -> User:
        email = f"{name}-{uuid.uuid4().hex[:8]}@example.com"
        response = self._post(
            "/api/auth/sign-up/email", {"email": email, "password": PASSWORD, "name": name}
        )
        assert response.status_code == 200, response.text
        return self.sign_in(email)

    def sign_in(self, email: str) -> User:
        response = self._post("/api/auth/sign-in/email", {"email": email, "password": PASSWORD})
        assert response.status_code == 200, response.text
        cookie = "; ".join(
            line.split(";", 1)[0] for line in response.headers.get_list("set-cookie")
        )
        return User(self, response.json()["user"]["id"], email, cookie)

    def sign(self, payload: dict[str, Any]) -> str:
        """A JWT signed by Better Auth's own `signJWT` with these claims (and its defaults
        for those left out: `exp` in 15 minutes, `iss` and `aud` its base URL)."""
        token: str = self._post("/test/sign", {"payload": payload}).json()["token"]
        return token

    def hs256(self, claims: dict[str, Any]) -> str:
        """A hand-rolled HS256 token, signed by jose with BETTER_AUTH_SECRET."""
        token: str = self._post("/test/hs256", {"claims": claims}).json()["token"]
        return token


def wait_for_new_kid(user: User, old_kid: str, timeout: float = 15) -> str:
    """A token of `user` signed with a key other than `old_kid` (after a rotation)."""
    import jwt

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        token = user.token()
        if jwt.get_unverified_header(token)["kid"] != old_kid:
            return token
        time.sleep(0.25)
    raise AssertionError(f"no key rotation within {timeout}s")
