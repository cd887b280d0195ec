"""README.md: the Space front matter is valid, and every variable the code reads is documented."""

from __future__ import annotations

import re
import unicodedata

from pydantic import AliasChoices

from src.config.settings import Settings
from tests import dockerfile_replay
from tests.server import ROOT

README = ROOT / "README.md"
SPACE_COLORS = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}
FRONT_MATTER_KEYS = {
    "title",
    "emoji",
    "colorFrom",
    "colorTo",
    "sdk",
    "app_port",
    "short_description",
    "pinned",
    "license",
}
# Space keys that mean nothing for `sdk: docker` (Gradio's version, the Gradio/static file).
DOCKER_IGNORED_KEYS = {"sdk_version", "app_file", "python_version"}
# Reading the environment anywhere else than in Settings.
ENV_ACCESS = re.compile(r"os\.environ|os\.getenv|getenv\(|environ\[|environ\.get|putenv")


def front_matter(text: str) -> dict[str, str]:
    """The `key: value` lines between the opening and closing `---` (PyYAML is not here)."""
    lines = text.splitlines()
    assert lines[0] == "---", "README.md must start with the Space front matter (---)"
    end = lines.index("---", 1)
    values: dict[str, str] = {}
    for line in lines[1:end]:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z_]+):\s*(.*?)\s*", line)
        assert match, f"not a simple `key: value` line: {line!r}"
        key, value = match.groups()
        assert key not in values, f"{key} twice"
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def test_front_matter_configures_a_docker_space() -> None:
    meta = front_matter(README.read_text(encoding="utf-8"))
    assert set(meta) == FRONT_MATTER_KEYS
    assert not DOCKER_IGNORED_KEYS & set(meta)
    assert meta["sdk"] == "docker"
    assert meta["colorFrom"] in SPACE_COLORS and meta["colorTo"] in SPACE_COLORS
    assert meta["pinned"] in {"true", "false"}
    assert meta["title"].strip()
    # "emoji-only character allowed"
    assert meta["emoji"] and all(
        unicodedata.category(ch) == "So" or ch in "\ufe0f\u200d" for ch in meta["emoji"]
    ), meta["emoji"]
    # The Hub refuses a short_description over 60 characters.
    assert 0 < len(meta["short_description"]) <= 60


def test_app_port_is_the_port_the_image_serves() -> None:
    meta = front_matter(README.read_text(encoding="utf-8"))
    instructions = dockerfile_replay.parse_dockerfile((ROOT / "Dockerfile").read_text())
    exposed = [i.args for i in instructions if i.keyword == "EXPOSE"]
    cmd = next(i.exec_form for i in instructions if i.keyword == "CMD")
    assert cmd is not None
    assert meta["app_port"] == str(dockerfile_replay.APP_PORT)
    assert exposed == [meta["app_port"]]
    assert cmd[cmd.index("--port") + 1] == meta["app_port"]


def test_license_file_matches_the_front_matter() -> None:
    meta = front_matter(README.read_text(encoding="utf-8"))
    assert meta["license"] == "mit"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


def environment_variables() -> set[str]:
    names = set()
    for name, field in Settings.model_fields.items():
        names.add(name.upper())
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(str(choice).upper() for choice in alias.choices)
        elif isinstance(alias, str):
            names.add(alias.upper())
    return names


def test_every_environment_variable_is_documented() -> None:
    text = README.read_text(encoding="utf-8")
    variables = environment_variables()
    assert {"DATABASE_URL", "JWT_SECRET", "PORT", "WEB_CONCURRENCY"} <= variables
    missing = sorted(v for v in variables if f"`{v}`" not in text)
    assert missing == [], f"not in README.md: {missing}"


def test_settings_is_the_only_reader_of_the_environment() -> None:
    """So Settings.model_fields is the complete list of variables the code reads."""
    readers = []
    for path in sorted((ROOT / "src").rglob("*.py")):
        if path == ROOT / "src" / "config" / "settings.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if ENV_ACCESS.search(line):
                readers.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert readers == []


def test_readme_commands_are_what_ci_runs() -> None:
    text = README.read_text(encoding="utf-8")
    assert "`./scripts/serve`" in text and "`./scripts/test`" in text
    assert "./scripts/test" in (ROOT / ".ci" / "run").read_text()
    for script in ("serve", "test"):
        assert (ROOT / "scripts" / script).stat().st_mode & 0o111


def test_readme_links_resolve() -> None:
    text = README.read_text(encoding="utf-8")
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", heading.lower()).replace(" ", "-")
        for heading in re.findall(r"(?m)^#+ (.+)$", text)
    }
    for target in re.findall(r"\]\(([^)]+)\)", text):
        if target.startswith("#"):
            assert target[1:] in anchors, target
        elif not target.startswith("http"):
            assert (ROOT / target).exists(), target


def test_settings_env_file_is_documented() -> None:
    assert "`.env`" in README.read_text(encoding="utf-8")
    assert Settings.model_config.get("env_file") == ".env"


# Where the app names an error code: ApiError(status, "CODE"), `code = "CODE"`,
# error_body(message, "CODE"), error_response(status, "CODE"), _error(message, "CODE").
CODE_IN_SOURCE = re.compile(
    r"(?:ApiError\(\s*\d{3},\s*|\bcode\s*=\s*|_error\([^()]*?,\s*|error_body\(\s*[^()]*?,\s*"
    r'|error_response\(\s*\d{3},\s*)"([A-Z][A-Z_]+)"',
    re.S,
)


def test_every_error_code_is_in_the_table() -> None:
    """A client reading a `code` the app sends finds it in the README's table."""
    text = README.read_text(encoding="utf-8")
    table = "\n".join(line for line in text.splitlines() if line.startswith("| "))
    codes = {
        code
        for path in sorted((ROOT / "src").rglob("*.py"))
        for code in CODE_IN_SOURCE.findall(path.read_text(encoding="utf-8"))
    }
    assert {"NOT_READY", "STARTING", "DATABASE_UNAVAILABLE", "VALIDATION_ERROR"} <= codes
    missing = sorted(code for code in codes if f"`{code}`" not in table)
    assert missing == [], f"error codes missing from the README's table: {missing}"


FRONTEND_FILES = (
    ROOT / "tests" / "betterauth" / "frontend" / "todo-api.mjs",
    ROOT / "tests" / "betterauth" / "frontend" / "backend-token.mjs",
)
CODE_FENCE = re.compile(r"^```(js|javascript|ts|typescript|jsx|tsx)\n(.*?)^```$", re.M | re.S)


def test_the_frontend_code_shown_is_the_code_the_tests_run() -> None:
    """Every JavaScript block of the README is one of the files tests/test_betterauth.py
    runs with Node, verbatim, and each of those files is shown."""
    text = README.read_text(encoding="utf-8")
    shown = [body for _, body in CODE_FENCE.findall(text)]
    files = {
        path.relative_to(ROOT).as_posix(): path.read_text(encoding="utf-8")
        for path in FRONTEND_FILES
    }
    for name, content in files.items():
        assert content in shown, f"README.md does not show {name} as it is"
        assert f"`{name}`" in text, f"README.md does not say where {name} is"
    unrun = [body.splitlines()[0] for body in shown if body not in files.values()]
    assert unrun == [], f"JavaScript in README.md that no test runs: {unrun}"


def test_ci_installs_the_better_auth_test_packages() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "cd tests/betterauth && npm ci" in ci
    assert ci.index("npm ci") < ci.index("./scripts/test")
