"""`wsm bench`: argument handling for the suite and the soak (the CLI stays thin)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from bench import report
from bench.suite import SECTIONS, Options, Suite, progress_bar, run


def bench(args: argparse.Namespace) -> int:
    argv = sys.argv[1:] if sys.argv[1:2] == ["bench"] else ["bench", *sys.argv[1:]]
    env = report.environment(argv)
    if args.sections == ["soak"]:
        from bench.soak import soak

        result: dict[str, Any] = {"env": env, "soak": soak(minutes=args.minutes, tiny=args.tiny)}
        result["load_after"] = os.getloadavg()
        _emit(result, args, report.soak_markdown)
        return 0 if result["soak"]["ok"] else 1
    sections = args.sections or list(SECTIONS)
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        print(f"wsm bench: unknown section(s) {unknown} (known: {', '.join(SECTIONS)}, soak)")
        return 2
    options = Options.tiny() if args.tiny else Options()
    if args.rounds and not args.tiny:
        options.rounds = args.rounds
    if args.peers is not None:
        options.peers = tuple(p for p in args.peers.split(",") if p)
    total = Suite(options).steps(sections)
    progress = progress_bar(total) if sys.stderr.isatty() or not args.json else None
    sections_out = run(sections, options, progress)
    if progress is not None:
        sys.stderr.write("\n")
    result = {
        "env": env,
        "options": options.__dict__,
        "sections": sections_out,
        "load_after": os.getloadavg(),
    }
    _emit(result, args, report.markdown)
    return 0


def _emit(result: dict[str, Any], args: argparse.Namespace, to_markdown: Any) -> None:
    if args.json:
        print(json.dumps(result, default=str))
    else:
        print(to_markdown(result))
    if args.record:
        with report.RESULTS.open("a") as f:
            f.write("\n" + to_markdown(result) + "\n")
