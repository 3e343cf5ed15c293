"""Processes of a benchmark run: simulators (`wsm simulate`) and measured clients
(`python -m bench.clients`), each in its own fresh process, driven synchronously."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

# Children run from the directory that holds this `bench`, so that `python -m bench.clients`
# finds this checkout's code whatever the caller's working directory holds.
HOME = str(Path(__file__).resolve().parent.parent)


class BenchError(Exception):
    pass


def _read_line(proc: subprocess.Popen[str], timeout: float, what: str) -> dict[str, Any]:
    """The next JSON line of `proc`'s stdout (non-JSON lines are skipped)."""
    box: list[str | None] = []

    def read() -> None:
        assert proc.stdout is not None
        while True:
            line = proc.stdout.readline()
            if not line or line.startswith("{"):
                box.append(line or None)
                return

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(timeout)
    if not box:
        raise BenchError(f"{what}: nothing after {timeout:.0f}s")
    if box[0] is None:
        proc.wait(5)
        err = proc.stderr.read()[-2000:] if proc.stderr is not None else ""
        raise BenchError(f"{what}: exited ({proc.returncode}) {err.strip()}")
    return dict(json.loads(box[0]))


# Every benchmark's simulator options, by venue (one table: the suite, the soak and
# bench.venues all start simulators through `Simulator`):
# - OKX's simulator sends an empty book update after a quiet second (as OKX does) and a blast
#   does not count as one: peers counted it as an extra message;
# - KuCoin's heartbeat comes from its token answer (18 s by default): a stalled socket in the
#   soak would hide the next injected gap behind the resync that follows its detection.
SIM_ARGS: dict[str, tuple[str, ...]] = {
    "okx": ("--option", "keepalive=0"),
    "kucoin": ("--option", "ping_interval_ms=1000", "--option", "ping_timeout_ms=1000"),
}


class Simulator:
    """`wsm simulate` in its own process, with the venue's `SIM_ARGS`; market events off
    (`rate` 0) unless asked for, so that only blasts flow."""

    def __init__(
        self,
        exchange: str = "binance",
        *,
        symbols: int = 0,
        seed: int = 1,
        blast: float | None = None,
        rate: float = 0.0,
    ) -> None:
        """`blast`: frames per second per stream to every subscription as soon as it is made
        (None: only on demand, `control("blast", ...)`)."""
        self.exchange = exchange
        extra = [] if blast is None else ["--blast", str(blast)]
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "engine.cli", "simulate", "--exchange", exchange),
                *("--rate", str(rate), "--symbols", str(symbols), "--seed", str(seed), *extra),
                *SIM_ARGS.get(exchange, ()),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=HOME,
        )
        info = _read_line(self.proc, 60, f"{exchange} simulator")
        self.ws_url, self.rest_url = info["ws_url"], info["rest_url"]
        self.pid = self.proc.pid

    def control(self, path: str, **query: Any) -> Any:
        qs = urllib.parse.urlencode({k: str(v) for k, v in query.items()})
        url = f"{self.rest_url}/_sim/{path}" + (f"?{qs}" if qs else "")
        with urllib.request.urlopen(url, timeout=30) as resp:
            return json.loads(resp.read())

    def subscribed(self) -> set[str]:
        return {s for subs in self.control("stats")["subscriptions"] for s in subs}

    def wait_subscribed(self, streams: list[str], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not set(streams) <= self.subscribed():
            if time.monotonic() > deadline:
                raise BenchError(f"streams never subscribed at the simulator: {streams[:4]}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Client:
    """One measured client process (see bench/clients.py)."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.job = job
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if job.get("pythonpath"):  # another checkout of WSM (before/after comparisons)
            env["PYTHONPATH"] = job["pythonpath"]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.clients", json.dumps(job)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=job.get("pythonpath") or HOME,
        )

    def expect(self, event: str, timeout: float) -> dict[str, Any]:
        line = _read_line(self.proc, timeout, f"{self.job['variant']} client")
        if line.get("event") == "error":
            self.stop()
            raise BenchError(f"{self.job['variant']}: {line['error']}")
        if line.get("event") != event:
            raise BenchError(f"{self.job['variant']}: expected {event}, got {line}")
        return line

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()


def run_client(
    sim: Simulator, job: dict[str, Any], *, rate: float | None, count: int, timeout: float = 300
) -> dict[str, Any]:
    """Start a client, wait until its streams are subscribed at the simulator, blast `count`
    frames per stream and connection (`rate` per second per stream, None: as fast as it
    drains), and return the client's result with what the simulator says it sent."""
    job = {"ws_url": sim.ws_url, "rest_url": sim.rest_url, "idle": 3.0} | job
    client = Client(job)
    try:
        client.expect("ready", 120)
        started = sim.control("blast", rate="max" if rate is None else rate, count=count)
        if not started["clients"]:
            raise BenchError(f"{job['variant']}: no blastable subscription at the simulator")
        result = client.expect("result", timeout)
        stats = sim.control("blast/stats")
        result["sim_sent"] = stats["sent"]
        result["sim_seconds"] = max((c["seconds"] or 0.0) for c in stats["per_client"])
        sim.control("blast/stop")
        return result
    finally:
        client.stop()
