"""A small concurrent load generator for the soak and crash runs (not for measuring speed:
the benchmark uses wrk). Records every task the server acknowledged with a 201."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any

import httpx2 as httpx
import jwt

# One INFO line per request from the client library would cost the load generator more
# CPU than the requests themselves.
logging.getLogger("httpx2").setLevel(logging.WARNING)


def bearer(secret: str, user: str) -> dict[str, str]:
    claims = {"sub": user, "exp": int(time.time()) + 24 * 3600}
    return {"Authorization": f"Bearer {jwt.encode(claims, secret, 'HS256')}"}


@dataclass
class Outcome:
    created: set[str] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)
    counts: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    transport_errors: int = 0

    def count(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1


async def run_load(
    base_url: str,
    secret: str,
    *,
    connections: int,
    seconds: float,
    mix: dict[str, int],
    users: int = 8,
    stop: asyncio.Event | None = None,
) -> Outcome:
    """`mix` weights the operations: list, create, update, delete."""
    outcome = Outcome()
    operations = [op for op, weight in mix.items() for _ in range(weight)]
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as client:

        async def worker(index: int) -> None:
            user = f"soak-user-{index % users}"
            headers = bearer(secret, user)
            mine: list[str] = []
            while time.monotonic() < deadline and not (stop and stop.is_set()):
                op = random.choice(operations) if mine else "create"
                try:
                    await _one(client, op, user, headers, mine, outcome)
                except httpx.TransportError:
                    outcome.transport_errors += 1
                    if stop is not None:
                        return

        await asyncio.gather(*(worker(i) for i in range(connections)))
    return outcome


async def _one(
    client: Any, op: str, user: str, headers: dict[str, str], mine: list[str], outcome: Outcome
) -> None:
    base = f"/api/{user}/tasks"
    if op == "list":
        response = await client.get(base, params={"limit": 20}, headers=headers)
        expected = 200
    elif op == "create":
        response = await client.post(base, json={"title": f"soak {time.time()}"}, headers=headers)
        expected = 201
        if response.status_code == 201:
            task_id = response.json()["id"]
            outcome.created.add(task_id)
            mine.append(task_id)
    elif op == "update":
        task_id = random.choice(mine)
        response = await client.put(f"{base}/{task_id}", json={"title": "updated"}, headers=headers)
        expected = 200
    else:
        task_id = mine.pop(random.randrange(len(mine)))
        response = await client.delete(f"{base}/{task_id}", headers=headers)
        expected = 204
        if response.status_code == 204:
            outcome.deleted.add(task_id)
    outcome.count(f"{op}:{response.status_code}")
    if response.status_code != expected:
        outcome.errors.append(f"{op} -> {response.status_code} {response.text[:200]}")
