"""Soak: 300+ jobs across all five providers under injected 5xx and 429 storms (issue 10).

Kernels are real processes (``tests/_kernel_scenario.py``, driven by ``tests/_kernels.py``) on
one ``JUPYTER_IMAGINE_HOME`` against one served sandbox. While they run, faults are injected
through ``POST /_sandbox/faults``: a 5xx (500/502/503 in turn) for ``--errors`` of the requests
(the pump reads ``/_sandbox/requests`` every 0.25 s and queues that share of the requests
just seen as faults for the next ones), and every ``--storm-every`` seconds a storm on one
provider: every request to it is answered 429 (``Retry-After: 0.5``) for ``--storm-seconds``
(a window in time, as real rate limits are, not a number of requests: a count would starve a
provider whose clients back off, since its queued 429s would never drain); ``--drops`` of the
requests lose their connection (``drop_before``/``drop_after`` in turn) and ``--timeouts`` are
held past the client's timeout (``kind: timeout``), queued the same way.

Printed per configuration (one kernel; then ``--kernels`` sharing the home, one of them killed
with SIGKILL and restarted once an eighth of its submits were answered): jobs terminal,
succeeded/failed, duplicate submits, regressions, live jobs taken over, lost jobs, missing
images, wall time, and the faults injected.

Run: ``python benchmarks/soak.py [--jobs 320] [--kernels 2] [--speed 40] [--errors 0.2]``
"""

from __future__ import annotations

import argparse
import itertools
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from _kernels import PROVIDERS, Plan, Sandbox, job_specs, run, submits_seen

#: Faults hit every provider route (CDNs and neuroflash's token service included): a glob
#: (fnmatch, whole path) on the first letters of apiframe, banatie(-cdn), blockade,
#: neuroflash(-id) and thenextleg, which leaves ``/``, ``/healthz`` and ``/_sandbox/*`` alone.
PROVIDER_PATHS = "/[abnt]*"
#: Seconds a ``timeout`` fault holds its answer (past the engine's request timeout).
HOLD = 15.0
_DROP_KINDS = itertools.cycle(("drop_before", "drop_after"))


def switch_spec(kind: str, count: int) -> dict[str, Any]:
    """The ``POST /_sandbox/faults`` body for a ``drop`` or ``timeout`` switch of ``count``."""
    if kind == "drop":
        return {"path": PROVIDER_PATHS, "kind": next(_DROP_KINDS), "count": count}
    return {"path": PROVIDER_PATHS, "kind": "timeout", "delay": HOLD, "count": count}


def switch_supported(sandbox: Sandbox, kind: str) -> bool:
    """``True`` if the sandbox accepts a ``kind`` switch (probed on a path nothing requests)."""
    probe = {**switch_spec(kind, 1), "path": "/__soak_probe__"}
    response = sandbox.add_fault(**probe)
    sandbox.clear_faults()
    return response.status_code == 201


class FaultPump:
    """Called about every 0.1 s while kernels run; queues faults in step with the traffic."""

    def __init__(self, sandbox: Sandbox, errors: float, storm_every: float,
                 storm_seconds: float, switches: dict[str, float]) -> None:
        self.sandbox = sandbox
        self.errors = errors
        self.storm_every = storm_every
        self.storm_seconds = storm_seconds
        self.switches = switches
        self.statuses = itertools.cycle((500, 502, 503))
        self.providers = itertools.cycle(PROVIDERS)
        self.last_total = 0
        self.carry: dict[str, float] = {}
        self.next_tick = 0.0
        self.next_storm = time.time() + storm_every
        self.injected: dict[str, int] = {"5xx": 0, "storms": 0}

    def __call__(self) -> None:
        now = time.time()
        if now < self.next_tick:
            return
        self.next_tick = now + 0.25
        try:
            total = sum(self.sandbox.requests().values())
            seen, self.last_total = total - self.last_total, total
            if self.errors > 0 and seen > 0:
                n = self._share("5xx", seen * self.errors)
                if n:
                    self.sandbox.add_fault(path=PROVIDER_PATHS, status=next(self.statuses),
                                           count=n)
                    self.injected["5xx"] += n
            for kind, rate in self.switches.items():
                n = self._share(kind, seen * rate)
                if n:
                    self.sandbox.add_fault(**switch_spec(kind, n))
                    self.injected[kind] = self.injected.get(kind, 0) + n
            if self.storm_every > 0 and now >= self.next_storm:
                self.next_storm = now + self.storm_every * random.uniform(0.7, 1.3)
                self.sandbox.add_fault(path=f"/{next(self.providers)}*", status=429,
                                       count=None, seconds=self.storm_seconds,
                                       retry_after=0.5)
                self.injected["storms"] += 1
        except httpx.HTTPError:
            pass  # the sandbox is busy; the next tick tries again

    def _share(self, kind: str, amount: float) -> int:
        amount += self.carry.get(kind, 0.0)
        n = int(amount)
        self.carry[kind] = amount - n
        return n


def plan_for(jobs: int, kernels: int, deadline: float, kill: bool) -> Plan:
    """``jobs`` spread round-robin over the five providers and evenly over the kernels."""
    names = [chr(ord("A") + i) for i in range(kernels)]
    per: dict[str, dict[str, int]] = {name: dict.fromkeys(PROVIDERS, 0) for name in names}
    for i in range(jobs):
        per[names[i % kernels]][PROVIDERS[(i // kernels) % len(PROVIDERS)]] += 1
    specs = {name: job_specs(counts) for name, counts in per.items()}
    victim = names[0] if kill else None
    share = max(1, len(specs[names[0]]) // 8)

    def kill_when(events: list[dict[str, Any]]) -> bool:
        return any(e.get("ev") == "started_all" for e in events) and \
            submits_seen(events)[1] >= share

    return Plan(jobs=specs, kill=victim, kill_when=kill_when, deadline=deadline)


def soak(args: argparse.Namespace, kernels: int, kill: bool) -> None:
    with Sandbox(speed=args.speed) as sandbox:
        switches = {}
        for kind, rate in (("drop", args.drops), ("timeout", args.timeouts)):
            if rate > 0:
                if switch_supported(sandbox, kind):
                    switches[kind] = rate
                else:
                    print(f"  --{kind}s {rate:g}: refused by this sandbox "
                          f"(POST /_sandbox/faults refuses {switch_spec(kind, 1)}); "
                          "running without it")
        pump = FaultPump(sandbox, args.errors, args.storm_every, args.storm_seconds, switches)
        workdir = Path(tempfile.mkdtemp(prefix="ji-soak-"))
        plan = plan_for(args.jobs, kernels, args.deadline, kill)
        got, info = run(plan, sandbox, workdir, on_tick=pump)
        requests = sum(sandbox.requests().values())
    what = f"{kernels} kernel{'s' if kernels > 1 else ''} on one home"
    if kill:
        what += f", {plan.kill} killed -9 after {info['kill_at']:.1f} s and restarted"
    print(f"\n{args.jobs} jobs, {what}")
    print(f"  {got.line()}")
    print(f"  wall {info['wall']:.1f} s   HTTP requests {requests}   injected {pump.injected}   "
          f"submit requests client/server {info['client_submit_requests']}/"
          f"{info['server_submit_requests']}   logs {workdir}")
    for line in got.report().splitlines()[1:]:
        print(f"  {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=320, help="jobs per run (default 320)")
    parser.add_argument("--kernels", type=int, default=2,
                        help="kernels sharing the home in the second run (default 2; 1: "
                             "only the one-kernel run)")
    parser.add_argument("--speed", type=float, default=40.0,
                        help="sandbox clock speed (default 40: an imagine takes ~1 s)")
    parser.add_argument("--errors", type=float, default=0.2,
                        help="share of requests answered 5xx (default 0.2)")
    parser.add_argument("--storm-every", type=float, default=4.0,
                        help="seconds between 429 storms (default 4; 0: none)")
    parser.add_argument("--storm-seconds", type=float, default=2.0,
                        help="how long each storm answers 429 to every request (default 2)")
    parser.add_argument("--drops", type=float, default=0.025,
                        help="share of dropped connections (default 0.025)")
    parser.add_argument("--timeouts", type=float, default=0.025,
                        help="share of responses held past the timeout (default 0.025)")
    parser.add_argument("--no-kill", action="store_true",
                        help="do not kill a kernel in the multi-kernel run")
    parser.add_argument("--shared-only", action="store_true",
                        help="skip the one-kernel run")
    parser.add_argument("--deadline", type=float, default=600.0,
                        help="seconds each kernel waits for every job to be final (default 600)")
    args = parser.parse_args()
    print(f"soak: {args.jobs} jobs over {', '.join(PROVIDERS)}; sandbox speed {args.speed:g}; "
          f"{args.errors:.0%} 5xx; 429 storms of {args.storm_seconds:g} s every "
          f"~{args.storm_every:g} s", flush=True)
    if not args.shared_only:
        soak(args, 1, kill=False)
    if args.kernels > 1:
        soak(args, args.kernels, kill=not args.no_kill)


if __name__ == "__main__":
    main()
