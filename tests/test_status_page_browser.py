"""The status page in a real headless Chromium, at phone and desktop widths.

A real server process (SQLite default, on a "Space") serves `/`; Chromium renders it. The
page must show the database facts, fit the phone's width without sideways scrolling,
render something (the screenshot is not blank) and log no console error. The console
error check is itself proven on pages with deliberate errors.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.browser import chromium_path, decode_png, dump_dom, open_page
from tests.server import Server, clean_env, run_server

VIEWPORTS = {"phone": (390, 844, True), "desktop": (1280, 800, False)}


@pytest.fixture(scope="module")
def chromium() -> str:
    path = chromium_path()
    if path is None:
        pytest.fail("chromium is not installed: apt-get install chromium (.ci/run does it)")
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("status-page")
    env = clean_env(
        HOME=str(base / "home"),
        SQLITE_PATH=str(base / "todo.db"),
        SPACE_ID="someone/todo-backend",
    )
    with run_server(env, cwd=base) as running, running.client() as client:
        import time

        deadline = time.monotonic() + 20
        while client.get("/ready").status_code != 200:
            assert time.monotonic() < deadline, running.logs()
            time.sleep(0.05)
        running.extra["sqlite_path"] = str(base / "todo.db")
        yield running


def _facts(server: Server) -> list[str]:
    return [
        "todo-backend",
        "SQLite",
        "DATABASE_URL is not set.",
        str(server.extra["sqlite_path"]),
        "Data will not survive a restart",
        "FALLBACK_CONNECTED",
    ]


def test_dump_dom_shows_the_database_facts(chromium: str, server: Server) -> None:
    dom = dump_dom(server.base_url + "/")
    for fact in _facts(server):
        assert fact in dom, fact
    for link in ('href="/docs"', 'href="/health"', 'href="/config/database"'):
        assert link in dom


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_status_page_renders_without_errors(
    chromium: str, server: Server, viewport: str, tmp_path: Path
) -> None:
    width, height, mobile = VIEWPORTS[viewport]
    with open_page(server.base_url + "/", width=width, height=height, mobile=mobile) as page:
        errors = page.console_errors()
        text = page.evaluate("document.body.innerText")
        layout = page.evaluate(
            "({inner: window.innerWidth, scroll: document.documentElement.scrollWidth,"
            " font: parseFloat(getComputedStyle(document.body).fontSize),"
            " database: document.querySelector('h2').getBoundingClientRect().top})"
        )
        png = page.screenshot()
    (tmp_path / f"status-{viewport}.png").write_bytes(png)
    assert errors == []
    for fact in _facts(server):
        assert fact in text, fact
    assert layout["inner"] == width  # the viewport meta tag is honoured
    assert layout["scroll"] <= layout["inner"], layout  # nothing wider than the screen
    assert layout["font"] >= 16
    assert layout["database"] < height  # the database facts start on the first screen
    image = decode_png(png)
    assert (image.width, image.height) == (width, height)
    assert image.ink() > 0.02 and image.colours() > 20, (image.ink(), image.colours())


# -- the console error check can fail ---------------------------------------------------


@pytest.fixture
def bad_pages(server: Server) -> Iterator[str]:
    """Serves the real status page with one deliberate fault injected per path."""
    import httpx2 as httpx

    response = httpx.get(server.base_url + "/", headers={"Accept": "text/html"})
    original, csp = response.text, response.headers["content-security-policy"]
    pages = {
        "/throws": (original.replace("</main>", "<script>null.boom()</script></main>"), None),
        "/console": (
            original.replace("</main>", "<script>console.error('x')</script></main>"),
            None,
        ),
        "/missing": (
            original.replace("</head>", '<link rel="stylesheet" href="/nope.css"></head>'),
            None,
        ),
        # With the page's own Content-Security-Policy, even an external asset is refused.
        "/external": (
            original.replace(
                "</head>", '<link rel="stylesheet" href="https://example.com/x.css"></head>'
            ),
            csp,
        ),
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body, policy = pages.get(self.path, ("not found", None))
            self.send_response(200 if self.path in pages else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            if policy:
                self.send_header("Content-Security-Policy", policy)
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/throws", "exception: TypeError"),
        ("/console", "console.error: x"),
        ("/missing", "404"),
        ("/external", "Content Security Policy"),
    ],
)
def test_console_errors_are_detected(
    chromium: str, bad_pages: str, path: str, expected: str
) -> None:
    with open_page(bad_pages + path, width=390, height=844, mobile=True) as page:
        errors = page.console_errors()
    assert any(expected in error for error in errors), errors
