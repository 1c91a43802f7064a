#!/usr/bin/env python3
"""Interop test: drives a real shotline server with the Python client written from docs/protocol.md.

Usage: interop_test.py --server HOST:PORT --user U --password-file F --pins FILE

Prints one line per step (``PASS name: detail`` or ``FAIL name: reason``) and finally
``N passed, M failed``; exits 0 only if every step passed.

Order of the steps (chosen so that no step depends on timing): a long job A occupies the
backend, so the 20-shot job J and job B are guaranteed to be QUEUED when J's watch starts and when
B is cancelled; cancelling A (RUNNING) lets J run, and J's watch then sees RUNNING, progress and
DONE.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any, Optional

sys.dont_write_bytecode = True  # keep __pycache__ out of the repository
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from shotline_client import (  # noqa: E402
    TERMINAL_STATUSES,
    Client,
    PinMismatchError,
    ShotlineError,
    connect,
    parse_server,
)

BACKEND = "singlequdit"
STEP_TIMEOUT_S = 60.0
STATUS_RANK = {"QUEUED": 0, "INITIALIZING": 1, "RUNNING": 2, "DONE": 3, "ERROR": 3, "CANCELLED": 3}


class StepFailed(Exception):
    """A check of a step did not hold."""


def check(condition: bool, message: str) -> None:
    """Fails the current step with ``message`` unless ``condition``."""
    if not condition:
        raise StepFailed(message)


def short_job(shots: int = 20) -> dict[str, Any]:
    """Load 5 atoms, flip the spin with rlx(pi), measure: every shot reads 5 (seeded)."""
    return {
        "experiment_0": {
            "instructions": [["load", [0], [5]], ["rlx", [0], [math.pi]], ["measure", [0], []]],
            "num_wires": 1,
            "shots": shots,
            "seed": 42,
        }
    }


def long_job(shots: int, gates: int) -> dict[str, Any]:
    """A job that keeps the backend busy: ``gates`` slow rlz2 pulses per shot."""
    slow = [["rlz2", [0], [20 * math.pi]] for _ in range(gates)]
    return {
        "experiment_0": {
            "instructions": [["load", [0], [1]], *slow, ["measure", [0], []]],
            "num_wires": 1,
            "shots": shots,
            "seed": 1,
        }
    }


class Runner:
    """Runs named steps, prints one line each and counts them."""

    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0
        self.failed_names: set[str] = set()

    async def step(
        self,
        name: str,
        body: Callable[[], Awaitable[str]],
        needs: tuple[str, ...] = (),
        timeout: float = STEP_TIMEOUT_S,
    ) -> bool:
        """Runs ``body`` (returning a detail text) unless a step it ``needs`` failed."""
        missing = [n for n in needs if n in self.failed_names]
        started = time.monotonic()
        if missing:
            ok, detail = False, f"skipped: needs {', '.join(missing)}"
        else:
            try:
                detail = await asyncio.wait_for(body(), timeout)
                ok = True
            except StepFailed as exc:
                ok, detail = False, str(exc)
            except ShotlineError as exc:
                ok, detail = False, f"unexpected error response {exc}"
            except asyncio.TimeoutError:
                ok, detail = False, f"timed out after {timeout:.0f} s"
            except Exception as exc:  # any other failure is a failed step, with its text
                ok, detail = False, f"{type(exc).__name__}: {exc}"
        elapsed = time.monotonic() - started
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            self.failed_names.add(name)
        print(f"{'PASS' if ok else 'FAIL'} {name}: {detail} ({elapsed:.1f} s)", flush=True)
        return ok


async def expect_error(call: Awaitable[Any], code: str) -> ShotlineError:
    """Awaits ``call`` and returns the ShotlineError it raised; fails unless its code is ``code``."""
    try:
        value = await call
    except ShotlineError as exc:
        check(exc.code == code, f"expected error {code}, got {exc}")
        return exc
    raise StepFailed(f"expected error {code}, got a success: {value!r:.200}")


async def wait_status(client: Client, job_id: str, wanted: set[str], limit_s: float) -> str:
    """Polls a job's status until it is one of ``wanted``; returns it."""
    deadline = time.monotonic() + limit_s
    while True:
        status = (await client.status(job_id))["status"]
        if status in wanted:
            return status
        check(
            status not in TERMINAL_STATUSES,
            f"job {job_id} ended {status} while waiting for {sorted(wanted)}",
        )
        check(time.monotonic() < deadline, f"job {job_id} still {status} after {limit_s:.0f} s")
        await asyncio.sleep(0.05)


async def collect_watch(client: Client, job_id: str) -> list[dict[str, Any]]:
    """All events of a job's watch stream, until the server ends it."""
    return [event async for event in client.watch(job_id)]


def status_sequence(events: list[dict[str, Any]]) -> list[str]:
    """The statuses of the ``status`` events, in order."""
    return [e["status"]["status"] for e in events if e.get("kind") == "status"]


def check_status_order(statuses: list[str], final: str) -> None:
    """First QUEUED or RUNNING, never backwards, ``final`` last and only there."""
    check(bool(statuses), "the watch delivered no status event")
    check(statuses[0] in ("QUEUED", "RUNNING"), f"first status {statuses[0]}, expected QUEUED or RUNNING: {statuses}")
    check(statuses[-1] == final, f"last status {statuses[-1]}, expected {final}: {statuses}")
    check(
        all(s not in TERMINAL_STATUSES for s in statuses[:-1]),
        f"a terminal status before the last event: {statuses}",
    )
    ranks = [STATUS_RANK.get(s, -1) for s in statuses]
    check(-1 not in ranks, f"unknown status in {statuses}")
    check(ranks == sorted(ranks), f"statuses out of order: {statuses}")


async def run(args: argparse.Namespace) -> int:
    host, port = parse_server(args.server)
    with open(args.password_file, encoding="utf-8") as f:
        password = f.read().rstrip("\r\n")
    r = Runner()
    state: dict[str, Any] = {}
    client: Optional[Client] = None

    async def s_connect() -> str:
        nonlocal client
        client = await connect(host, port, pins_file=args.pins)
        return f"QUIC + TLS 1.3 with ALPN shotline/1; certificate {client.presented_pin} (first use: {client.first_use})"

    async def s_login() -> str:
        assert client is not None
        response = await client.login(args.user, password)
        check(len(response["token"]) == 64, f"token of {len(response['token'])} characters, expected 64")
        check(response["user"] == args.user, f"logged in as {response['user']!r}, expected {args.user!r}")
        with open(args.pins, encoding="utf-8") as f:
            check(client.presented_pin in f.read(), f"pin {client.presented_pin} not recorded in {args.pins}")
        return f"user {response['user']}, expires {response['expires_at']}, pin recorded in {args.pins}"

    async def s_pins() -> str:
        again = await connect(host, port, pins_file=args.pins)
        try:
            check(not again.first_use, "the second connection did not find the pin")
            await again.close()
            tmp = tempfile.mkdtemp()
            bad = os.path.join(tmp, "pins.json")
            with open(bad, "w", encoding="utf-8") as f:
                f.write('{"%s": "sha256:%s"}\n' % (again.server, "0" * 64))
            try:
                changed = await connect(host, port, pins_file=bad)
                await changed.close()
                raise StepFailed("a connection with a different pinned certificate was accepted")
            except PinMismatchError as exc:
                check("CHANGED" in str(exc), f"unclear mismatch message: {exc}")
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        finally:
            await again.close()
        return "reconnect matches the pin; a different pinned fingerprint is refused"

    async def s_whoami() -> str:
        assert client is not None
        me = await client.whoami()
        check(me["user"] == args.user, f"whoami says {me['user']!r}, expected {args.user!r}")
        return f"user {me['user']}, admin {me['is_admin']}"

    async def s_backends() -> str:
        assert client is not None
        names = [b["name"] for b in await client.backends()]
        check(BACKEND in names, f"backend {BACKEND} not listed: {names}")
        info = await client.backend(BACKEND)
        check(info["config"]["backend_name"] == BACKEND, f"backend config names {info['config']['backend_name']!r}")
        check(info["status"]["operational"] is True, f"{BACKEND} is not operational: {info['status']}")
        return f"backends {names}; {BACKEND}: max_shots {info['config']['max_shots']}"

    async def s_submit_long() -> str:
        assert client is not None
        sub = await client.submit(BACKEND, long_job(args.long_shots, args.long_gates), qobj_id="interop-long-A")
        state["A"] = sub["job_id"]
        check(sub["duplicate"] is False, "a fresh submission came back as a duplicate")
        status = await wait_status(client, state["A"], {"RUNNING"}, 30.0)
        return f"job A {state['A']} ({args.long_shots} shots) is {status}"

    async def s_submit_and_watch_start() -> str:
        assert client is not None
        sub = await client.submit(BACKEND, short_job(), qobj_id="interop-J")
        state["J"] = sub["job_id"]
        check(sub["status"]["status"] == "QUEUED", f"submitted job is {sub['status']['status']}, expected QUEUED")
        state["watch_J"] = asyncio.get_running_loop().create_task(collect_watch(client, state["J"]))
        return f"job J {state['J']} QUEUED behind A; watching it"

    async def s_cancel_queued() -> str:
        assert client is not None
        sub = await client.submit(BACKEND, short_job(), qobj_id="interop-B")
        job_b = sub["job_id"]
        state["B"] = job_b
        before = (await client.status(job_b))["status"]
        check(before == "QUEUED", f"job B is {before} before the cancel, expected QUEUED (A not running?)")
        after = await client.cancel(job_b)
        check(after["status"] == "CANCELLED", f"cancel of queued B answered {after['status']}, expected CANCELLED")
        now = (await client.status(job_b))["status"]
        check(now == "CANCELLED", f"status of B after cancel is {now}, expected CANCELLED")
        return f"job B {job_b}: QUEUED -> CANCELLED"

    async def s_cancel_running() -> str:
        assert client is not None
        job_a = state["A"]
        before = (await client.status(job_a))["status"]
        check(before == "RUNNING", f"job A is {before} before the cancel, expected RUNNING (make it longer: --long-shots)")
        reply = await client.cancel(job_a)
        check(reply["status"] in ("RUNNING", "CANCELLED"), f"cancel of running A answered {reply['status']}")
        events = await collect_watch(client, job_a)
        statuses = status_sequence(events)
        check(bool(statuses) and statuses[-1] == "CANCELLED", f"watch of A ended with statuses {statuses}, expected CANCELLED last")
        final = (await client.status(job_a))["status"]
        check(final == "CANCELLED", f"status of A is {final}, expected CANCELLED")
        return f"job A: cancel answered {reply['status']}; watch ended {statuses}"

    async def s_watch_done() -> str:
        events = await state["watch_J"]
        state["events_J"] = events
        statuses = status_sequence(events)
        check_status_order(statuses, "DONE")
        progress = [e["progress"] for e in events if e.get("kind") == "progress"]
        check(bool(progress), f"no progress event among {len(events)} events")
        last = progress[-1]
        check(
            (last["shots_done"], last["shots_total"]) == (20, 20),
            f"last progress {last['shots_done']}/{last['shots_total']}, expected 20/20",
        )
        done = [p["shots_done"] for p in progress]
        check(done == sorted(done), f"progress went backwards: {done}")
        check(all(e["kind"] in ("status", "progress") for e in events), f"unexpected event kinds {[e['kind'] for e in events]}")
        return f"statuses {statuses}; {len(progress)} progress events, last 20/20"

    async def s_result() -> str:
        assert client is not None
        result = await client.result(state["J"])
        check(result["status"] == "DONE" and result["success"] is True, f"result status {result['status']}, success {result['success']}")
        check(result["qobj_id"] == "interop-J", f"qobj_id {result['qobj_id']!r}, expected 'interop-J'")
        check(len(result["results"]) == 1, f"{len(result['results'])} experiment results, expected 1")
        exp = result["results"][0]
        memory = exp["data"]["memory"]
        check(len(memory) == 20, f"{len(memory)} memory values, expected 20")
        check(all(m == "5" for m in memory), f"memory values {sorted(set(memory))}, expected all '5'")
        check(exp.get("seed") == 42, f"seed {exp.get('seed')}, expected 42")
        return f"20 shots, all '5'; counts {exp['data'].get('counts')}"

    async def s_invalid() -> str:
        assert client is not None
        exc = await expect_error(client.submit(BACKEND, short_job(shots=0)), "VALIDATION_FAILED")
        check(exc.path == "experiment_0.shots", f"error path {exc.path!r}, expected 'experiment_0.shots'")
        codes = [d.get("code") for d in exc.details]
        check("SHOTS_OUT_OF_RANGE" in codes, f"details codes {codes}, expected SHOTS_OUT_OF_RANGE")
        return f"{exc.code} at {exc.path}: {exc.message}"

    async def s_cancel_finished() -> str:
        assert client is not None
        exc = await expect_error(client.cancel(state["J"]), "ALREADY_FINISHED")
        await expect_error(client.cancel(state["B"]), "ALREADY_FINISHED")
        return f"cancel of DONE J and CANCELLED B: {exc.code}"

    async def s_jobs() -> str:
        assert client is not None
        page = await client.jobs(limit=10)
        listed = {j["job_id"]: j["status"] for j in page["jobs"]}
        for name in ("A", "J", "B"):
            check(state[name] in listed, f"job {name} {state[name]} missing from the listing {sorted(listed)}")
        check(listed[state["J"]] == "DONE", f"J listed as {listed[state['J']]}")
        check(listed[state["B"]] == "CANCELLED", f"B listed as {listed[state['B']]}")
        return f"{len(page['jobs'])} jobs listed; J DONE, B CANCELLED, A {listed[state['A']]}"

    async def s_logout() -> str:
        assert client is not None
        old = client.token
        await client.logout()
        client.token = old
        exc = await expect_error(client.status(state["J"]), "UNAUTHENTICATED")
        return f"old token refused: {exc.code}"

    try:
        await r.step("connect", s_connect)
        await r.step("login", s_login, ("connect",))
        await r.step("pins", s_pins, ("login",))
        await r.step("whoami", s_whoami, ("login",))
        await r.step("backends", s_backends, ("login",))
        await r.step("submit long job A", s_submit_long, ("backends",))
        await r.step("submit J and start watching", s_submit_and_watch_start, ("submit long job A",))
        await r.step("cancel queued job B", s_cancel_queued, ("submit long job A",))
        await r.step("cancel running job A", s_cancel_running, ("submit long job A",), timeout=args.long_timeout)
        await r.step("watch J until DONE", s_watch_done, ("submit J and start watching",), timeout=args.long_timeout)
        await r.step("result of J", s_result, ("submit J and start watching",))
        await r.step("invalid job", s_invalid, ("login",))
        await r.step("cancel finished job", s_cancel_finished, ("result of J", "cancel queued job B"))
        await r.step("jobs listing", s_jobs, ("submit long job A", "submit J and start watching", "cancel queued job B"))
        await r.step("logout", s_logout, ("login",))
    finally:
        task = state.get("watch_J")
        if task is not None and not task.done():
            task.cancel()
        if client is not None:
            await client.close()
    print(f"{r.passed} passed, {r.failed} failed", flush=True)
    return 0 if r.failed == 0 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", required=True, help="HOST:PORT of the shotline server")
    parser.add_argument("--user", required=True, help="user name to log in with")
    parser.add_argument("--password-file", required=True, help="file holding the password (first line)")
    parser.add_argument("--pins", required=True, help="pins file (JSON {\"host:port\": \"sha256:...\"}); created on first use")
    parser.add_argument("--long-shots", type=int, default=3000, help="shots of the long job A (default 3000)")
    parser.add_argument("--long-gates", type=int, default=4, help="slow rlz2 pulses (1 ms each) per shot of job A")
    parser.add_argument("--long-timeout", type=float, default=120.0, help="limit in s for the steps that wait on job A")
    args = parser.parse_args()
    try:
        return asyncio.run(run(args))
    except (OSError, ValueError) as exc:
        print(f"FAIL setup: {exc}", flush=True)
        print("0 passed, 1 failed", flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
