"""Contract fuzzing: schemathesis against the app's own OpenAPI document.

Every operation is called in-process through schemathesis' ASGI transport, with the
lifespan running on a fresh SQLite database, and every response is checked against the
document with all of schemathesis' checks: no 5xx, documented status codes, content
types, headers and bodies, valid input accepted, invalid input refused, auth enforced,
`Allow` on 405s.

* `test_operation` — per operation: the examples, boundary-value (coverage) and random
  phases, valid and invalid input, as one user with their bearer token; `task_id` is a
  real task of theirs half of the time, an arbitrary string otherwise.
* `test_other_users` — the task operations with arbitrary `user_id`s and the same token:
  always 400/401/403 (405 for a method the path does not have), never a task.
* `test_stateful` — sequences along the links schemathesis infers from the document:
  create, then get / list / update / complete / delete with the created id.

Deterministic (derandomized). The default budget takes about 40 s; a real
campaign, with the status codes seen printed per operation:

    FUZZ_EXAMPLES=1000 .venv/bin/python -m pytest tests/test_contract_fuzz.py -s

(`FUZZ_EXAMPLES` random examples per operation on top of the boundary cases, and as many
stateful scenarios.)
"""

from __future__ import annotations

import collections
import copy
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pydantic import StringConstraints, TypeAdapter, ValidationError
from schemathesis.python import asgi as schemathesis_asgi

import src.application
from src.application import create_app
from src.auth.user_id import USER_ID_PATTERN
from src.schemas.tasks import TITLE_PATTERN, TaskCreate
from src.schemas.text import WHITESPACE, WHITESPACE_CLASS
from tests.conftest import TEST_SECRET, make_settings, make_token, running_app

USER = "fuzz-user"
TASKS = "/api/{user_id}/tasks"
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES") or 0) or None
SETTINGS = settings(
    max_examples=EXAMPLES or 250,
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=False,
    suppress_health_check=list(HealthCheck),
)
# A day, so a long campaign does not run into the token's expiry.
TOKEN = make_token(USER, ttl=86400)
if EXAMPLES:
    # A campaign outlasts the suite's per-test timeout.
    pytestmark = pytest.mark.timeout(max(120, EXAMPLES))


class CurrentApp:
    """The ASGI app the schemas point at: it forwards to the app of the running test.

    Schemathesis runs the app (lifespan included) on its own event loop; the `api` fixture
    swaps in a new app for each test and ends its lifespan afterwards.
    """

    def __init__(self) -> None:
        self.app: Any = None
        self.task_ids: list[str] = []
        self.statuses: collections.Counter[tuple[str, int]] = collections.Counter()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert self.app is not None, "no app: the test does not use the `api` fixture"
        await self.app(scope, receive, send)


CURRENT = CurrentApp()
CONFIG = f"""
[auth.openapi.BearerAuth]
bearer = "{TOKEN}"

[generation]
mode = "all"
deterministic = true

[phases.stateful.generation]
# Sequences of valid calls; invalid input is test_operation's.
mode = "positive"

[checks.negative_data_rejection]
# Schemathesis' list plus 413: how an over-large body is refused, before anything
# looks at its content.
expected-statuses = [
    "400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx",
]
"""
FIXED_USER = f"""
[parameters]
"path.user_id" = "{USER}"
"""


# The document the app serves at /openapi.json (the `api` fixture checks that the running
# app serves this same one). Copied: schemathesis adds the links it infers to its input.
DOCUMENT = copy.deepcopy(
    src.application.create_app(make_settings(Path(tempfile.mkdtemp()))).openapi()
)


def _schema(config: str) -> Any:
    loaded = schemathesis.openapi.from_dict(
        copy.deepcopy(DOCUMENT), config=schemathesis.Config.from_str(config)
    )
    loaded.app = CURRENT
    return loaded


schema = _schema(CONFIG + FIXED_USER)
any_user_schema = _schema(CONFIG).include(path_regex="^/api/")


@schema.hook
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any] | None) -> Any:
    """The fixed user everywhere (the `[parameters]` setting does not reach the stateful
    phase), and half of the task ids real tasks of theirs (some deleted along the way).

    (Where `[parameters]` applies, the hook sees only the generated parameters.)
    """
    if not path_parameters:
        return st.just(path_parameters)
    fixed = (
        {**path_parameters, "user_id": USER} if "user_id" in path_parameters else path_parameters
    )
    if "task_id" not in fixed or not CURRENT.task_ids:
        return st.just(fixed)
    return st.sampled_from([fixed["task_id"], *CURRENT.task_ids]).map(
        lambda task_id: {**fixed, "task_id": task_id}
    )


@pytest.fixture
def api(tmp_path: Path) -> Iterator[CurrentApp]:
    CURRENT.app = create_app(make_settings(tmp_path, better_auth_secret=TEST_SECRET))
    CURRENT.task_ids = []
    CURRENT.statuses.clear()
    try:
        ready = schema["/ready"]["GET"]
        deadline = time.monotonic() + 20
        while ready.Case().call().status_code != 200:
            assert time.monotonic() < deadline, "the app did not become ready"
            time.sleep(0.05)
        assert CURRENT.app.openapi() == DOCUMENT, "the schema is not this app's"
        create = schema[TASKS]["POST"]
        for n in range(8):
            response = create.Case(
                path_parameters={"user_id": USER},
                body={"title": f"seed {n}", "description": "seeded"},
                headers={"Authorization": f"Bearer {TOKEN}"},
            ).call()
            assert response.status_code == 201, response.text
            CURRENT.task_ids.append(response.json()["id"])
        yield CURRENT
    finally:
        schemathesis_asgi.shutdown_lifespans()
        if EXAMPLES:
            total = sum(CURRENT.statuses.values())
            print(f"\n{total} calls: {dict(sorted(CURRENT.statuses.items()))}")
        CURRENT.app = None
        CURRENT.task_ids = []


@schema.parametrize()
@SETTINGS
def test_operation(case: schemathesis.Case, api: CurrentApp) -> None:
    response = case.call_and_validate()
    api.statuses[(case.operation.label, response.status_code)] += 1


@any_user_schema.parametrize()
@settings(SETTINGS, max_examples=EXAMPLES or 75)
def test_other_users(case: schemathesis.Case, api: CurrentApp) -> None:
    response = case.call_and_validate()
    api.statuses[(case.operation.label, response.status_code)] += 1
    # The token is USER's: any other user id is refused (or malformed), whatever else.
    # (Except for the probes with methods the path does not have: those are 405s.)
    same_method = response.request.method == case.operation.method.upper()
    if same_method and (case.path_parameters or {}).get("user_id") != USER:
        assert response.status_code in (400, 401, 403), response.text


def test_stateful(api: CurrentApp) -> None:
    """Sequences along the links schemathesis infers from the document (create → read,
    update, complete, delete the created task; …), every response checked.

    Each scenario starts with no tasks: Hypothesis must see the same responses when it
    repeats a sequence, or it reports the generation as flaky.
    """

    class Machine(schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            super().setup()
            _delete_all_tasks()

        def after_call(self, response: schemathesis.Response, case: schemathesis.Case) -> None:
            super().after_call(response, case)
            api.statuses[(case.operation.label, response.status_code)] += 1

    api.task_ids.clear()  # ids come from the links (and random strings) here
    Machine.run(
        settings=settings(
            SETTINGS,
            max_examples=EXAMPLES or 200,
            stateful_step_count=8,
            phases=[Phase.generate],
        )
    )
    created = api.statuses[(f"POST {TASKS}", 201)]
    followed = sum(
        count
        for (label, status), count in api.statuses.items()
        if "{task_id}" in label and status in (200, 204)
    )
    assert created and followed, api.statuses


def _delete_all_tasks() -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    listed = (
        schema[TASKS]["GET"]
        .Case(path_parameters={"user_id": USER}, query={"limit": 100}, headers=auth)
        .call()
    )
    assert listed.status_code == 200, listed.text
    delete = schema[TASKS + "/{task_id}"]["DELETE"]
    for task in listed.json():
        gone = delete.Case(
            path_parameters={"user_id": USER, "task_id": task["id"]}, headers=auth
        ).call()
        assert gone.status_code == 204, gone.text
    assert len(listed.json()) < 100, "more tasks than one page: raise the limit"


# -- what the fuzzing found, pinned down ----------------------------------------


def test_status_page_is_documented_as_html_and_json() -> None:
    content = DOCUMENT["paths"]["/"]["get"]["responses"]["200"]["content"]
    assert set(content) == {"text/html", "application/json"}


def test_whitespace_class_is_the_whitespace_trimmed() -> None:
    characters = map(chr, range(0x110000))
    differ = [
        c for c in characters if bool(re.fullmatch(f"[{WHITESPACE_CLASS}]", c)) != (c in WHITESPACE)
    ]
    assert differ == []


TEXT = st.text(
    st.one_of(
        st.sampled_from(WHITESPACE + "\x00\x1c\ufeff\u200bx"),
        st.characters(exclude_categories=["Cs"]),
    ),
    max_size=300,
)


@given(
    title=TEXT
    | st.builds(lambda a, b, c: a + b + c, TEXT, st.text("x", min_size=250, max_size=256), TEXT)
)
@settings(max_examples=500, derandomize=True, deadline=None)
def test_title_pattern_documents_title_validation(title: str) -> None:
    documented = re.fullmatch(TITLE_PATTERN, title) is not None
    try:
        TaskCreate.model_validate({"title": title})
    except ValidationError:
        accepted = False
    else:
        accepted = True
    assert documented == accepted, repr(title)


@pytest.mark.parametrize(
    "user_id", ["alice", "a b", "é", "x" * 255, " a", "a ", "a\x85", "\u3000a", "a/b", "a\x00"]
)
def test_user_id_pattern_reads_alike_in_python_and_pydantic(user_id: str) -> None:
    # Pydantic validates the path with the Rust regex engine; clients read the pattern
    # as ECMA-262 (here: Python's `re`, which agrees with it on this pattern).
    server = TypeAdapter(Annotated[str, StringConstraints(pattern=USER_ID_PATTERN)])
    try:
        server.validate_python(user_id)
    except ValidationError:
        accepted = False
    else:
        accepted = True
    assert accepted == (re.fullmatch(USER_ID_PATTERN, user_id) is not None)
    assert accepted == (user_id in ("alice", "a b", "é", "x" * 255))


def test_405_allows_every_method_of_the_path(tmp_path: Path) -> None:
    # Starlette named only the first route that matched the path: `Allow: GET` for POST's path.
    expected = {
        "/api/u/tasks": ("OPTIONS", "GET, POST"),
        "/api/u/tasks/x": ("PATCH", "GET, PUT, DELETE"),
        "/api/u/tasks/x/complete": ("GET", "PATCH"),
        "/health": ("POST", "GET, HEAD"),
    }
    with running_app(make_settings(tmp_path, better_auth_secret=TEST_SECRET)) as (_, client):
        for path, (method, allow) in expected.items():
            response = client.request(method, path)
            assert response.status_code == 405, (path, response.text)
            assert response.headers["allow"] == allow, path
            assert response.json()["code"] == "METHOD_NOT_ALLOWED"
