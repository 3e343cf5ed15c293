"""What a benchmark run prints: the machine, versions and command beside every figure, a
terminal table, JSON, and a Markdown section for bench/RESULTS.md."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("picows", "uvloop", "msgspec", "numpy", "cryptofeed", "ccxt", "websockets")
RESULTS = Path(__file__).with_name("RESULTS.md")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(argv: list[str]) -> dict[str, Any]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "command": "wsm " + " ".join(argv),
        "machine": {
            "cores": os.cpu_count(),
            "cpu": cpu_model(),
            "system": f"{platform.system()} {platform.release()}",
        },
        "versions": versions,
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "load_before": os.getloadavg(),
    }


def _fig(x: dict[str, float] | None, fmt: str = "{:,.0f}") -> str:
    if not x:
        return "-"
    return f"{fmt.format(x['median'])} ({fmt.format(x['min'])}-{fmt.format(x['max'])})"


Column = tuple[str, Callable[[dict[str, Any]], str]]

COLUMNS: tuple[Column, ...] = (
    ("msg/s", lambda r: _fig(r.get("messages_per_s"))),
    ("CPU us/msg (= s per million)", lambda r: _fig(r.get("cpu_us_per_msg"), "{:.2f}")),
    ("levels/s", lambda r: _fig(r.get("levels_per_s"))),
    (
        "p50 / p99 / p99.9 us",
        lambda r: (
            " / ".join(_fig(r["latency_us"][k], "{:.0f}") for k in ("p50", "p99", "p99.9"))
            if r.get("latency_us")
            else "-"
        ),
    ),
    ("counts", lambda r: _counts(r)),
)


def _counts(r: dict[str, Any]) -> str:
    if "error" in r and not r.get("rounds"):
        return f"did not run: {r['error'][:160]}"
    text = "ok" if r.get("counts_ok") else "; ".join(r.get("shortfall", []))[:200]
    extras = [f"{k} {r[k]}" for k in ("lost", "gaps", "parse_errors") if r.get(k)]
    if r.get("frames_per_read"):
        extras.append(f"{r['frames_per_read']['median']:,.1f} frames per read")
    return ", ".join([text, *extras])


def _ratio_text(v: Any) -> str:
    return "-" if v is None else f"{v:.3f}"


def _target_text(t: dict[str, Any]) -> str:
    met = {True: "met", False: "NOT met", None: "not measured"}[t["met"]]
    value = "-" if t["value"] is None else f"{t['value']:.3f}"
    return f"{value} (limit {t['limit']:.3g}): {met}"


def markdown(report: dict[str, Any]) -> str:
    env = report["env"]
    m, v = env["machine"], env["versions"]
    lines = [
        f"## `{env['command']}` ({env['started']})",
        "",
        f"Machine: {m['cores']} cores, {m['cpu']}, {m['system']}. Load average before "
        f"{', '.join(f'{x:.2f}' for x in env['load_before'])}, after "
        f"{', '.join(f'{x:.2f}' for x in report.get('load_after', ()))}.",
        "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val) + ".",
        f"Rounds: {report['options']['rounds']} interleaved; figures are median (min-max).",
        "",
    ]
    for name, sec in report["sections"].items():
        lines += [f"### {name}: {sec.get('title', '')}", ""]
        if sec.get("error"):
            lines += [f"Did not run: {sec['error']}", ""]
            continue
        lines.append("| variant | " + " | ".join(c for c, _ in COLUMNS) + " |")
        lines.append("|---" * (len(COLUMNS) + 1) + "|")
        for row in sec["rows"]:
            lines.append(f"| {row['label']} | " + " | ".join(f(row) for _, f in COLUMNS) + " |")
        lines.append("")
        for title, key, fmt in (
            ("Ratios (same run)", "ratios", _ratio_text),
            ("Targets", "targets", _target_text),
        ):
            items = sec.get(key) or {}
            if items:
                lines.append(f"{title}:")
                lines += [f"- {k}: {fmt(val)}" for k, val in items.items()]
                lines.append("")
        if sec.get("note"):
            lines += [f"Note: {sec['note']}", ""]
    return "\n".join(lines)


def soak_markdown(report: dict[str, Any]) -> str:
    env, s = report["env"], report["soak"]
    m = env["machine"]
    lines = [
        f"## `{env['command']}` ({env['started']})",
        "",
        f"Machine: {m['cores']} cores, {m['cpu']}. Versions: "
        + ", ".join(f"{k} {val}" for k, val in env["versions"].items() if val)
        + ".",
        "",
        f"{s['seconds'] / 60:.1f} min, venues {', '.join(s['venues'])}, {s['faults']} faults "
        f"({', '.join(s['fault_kinds'])}), reconnects {s['reconnects']}, rollovers "
        f"{s['rollovers']}, parse errors {s['parse_errors']}. Result: "
        + ("**ok**" if s["ok"] else "**FAILED**"),
        "",
        f"| metric | first | last | slope per minute after {s['warm_up_s']:.0f} s |",
        "|---|---|---|---|",
    ]
    for k, slope in s["slopes_per_minute"].items():
        first = s["first"].get(k) if s["first"] else None
        last = s["last"].get(k) if s["last"] else None
        lines.append(f"| {k} | {first} | {last} | {'-' if slope is None else f'{slope:+.2f}'} |")
    lines += [
        "",
        "| venue | gaps injected | healed by the market | gaps detected | GAP records by reason |",
    ]
    lines.append("|---|---|---|---|---|")
    for v, g in s["gaps"].items():
        healed = g.get("healed", "-")
        lines.append(f"| {v} | {g['injected']} | {healed} | {g['detected']} | {g['by_reason']} |")
    if s.get("skips"):
        lines += [
            "",
            "Each injected loss, per book: detected (a sequence/checksum/crossed-book GAP "
            "before the next fault), absorbed (the book was resynchronising around it), "
            "missed (neither).",
            "",
            "| venue | detected | absorbed | missed |",
            "|---|---|---|---|",
        ]
        for v, c in s["skips"].items():
            lines.append(f"| {v} | {c['detected']} | {c['absorbed']} | {c['missed']} |")
    lines.append(f"\nLeftover shared-memory segments: {s['leftover_segments'] or 'none'}.")
    return "\n".join(lines)
