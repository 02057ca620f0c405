"""Command line: ``python -m wslab scenarios | run | grade | audit | learner | bench``.

What a command prints for a script goes to stdout; progress and errors go to stderr.

Exit status: 0 on success, 1 when a grade or an audit fails (or a run
fails), 2 for bad usage (an unknown name, a bad number, a file that is not
there or does not fit the design contract), 130 when interrupted (Ctrl-C,
SIGINT: one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from .errors import ConfigError, RunError
from .scenarios import SCENARIOS


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def _scenarios(args: argparse.Namespace) -> int:
    rows = [{"name": s.name, "description": s.description, "clients": s.clients,
             "seed": s.seed, "planned_s": round(s.planned_s, 2),
             "faults": [f.describe() for f in s.faults]} for s in SCENARIOS.values()]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        width = max(len(r["name"]) for r in rows)
        for r in rows:
            print(f"{r['name']:<{width}}  {r['description']}")
    return 0


def _pair(args: argparse.Namespace) -> Any:
    """The design --server and --client name (see wslab.external), or None."""
    if args.server is None and args.client is None:
        return None
    from .external import external_design

    missing = "--client" if args.client is None else "--server" if args.server is None else None
    if missing:
        raise ConfigError(f"give {missing} too: a command (such as 'node client.js'), or a "
                          "design name for wslab's Python side (such as production)")
    return external_design(args.server, args.client, name=args.name)


def _add_pair_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server", metavar="CMD", help="the server as a command, in any language "
                   "(e.g. \"node node/naive_server.js\"), or a design name: runs as a process, "
                   "in real time (the line protocol: help(wslab.external))")
    p.add_argument("--client", metavar="CMD", help="the client as a command, or a design name")
    p.add_argument("--name", help="the name of the --server/--client pair on the scorecard")


def _run(args: argparse.Namespace) -> int:
    from .lab import run

    pair = _pair(args)
    if (pair is None) == (args.design is None):
        raise ConfigError("run what? give --design NAME, or --server CMD and --client CMD")
    options: dict[str, Any] = {}
    if args.seed is not None:
        options["seed"] = args.seed
    if args.clients is not None:
        options["clients"] = args.clients
    if args.clock is not None:
        options["clock"] = args.clock
    result = run(pair or args.design, args.scenario, **options)
    if args.json:
        summary = result.summary()
        summary["errors_seen"] = [f"{e.where}: {e.error}" for e in result.errors[:20]]
        print(json.dumps(_jsonable(summary), indent=2))
    else:
        print(result.text())
        for error in result.errors[:5]:
            print(f"  at {error.t_s:.3f} s, {error.where}: {error.error}")
        if len(result.errors) > 5:
            print(f"  ... and {len(result.errors) - 5} more")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from .bench import bench, format_bench

    result = bench()
    print(json.dumps(_jsonable(result), indent=2) if args.json else format_bench(result))
    return 0


def _grade(args: argparse.Namespace) -> int:
    from .grading import grade

    scenarios = args.scenario or None
    designs = [*args.design, *([pair] if (pair := _pair(args)) is not None else [])]
    if not designs:
        raise ConfigError("grade what? give a design name or file, or --server CMD and "
                          "--client CMD")
    # Progress goes to stderr (never stdout, which scripts parse), unless asked not to.
    result = grade(*designs, scenarios=scenarios,
                   progress=not (args.json or args.quiet))
    cards = getattr(result, "cards", [result])
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    elif args.markdown:
        from .display import gradebook_markdown

        print(gradebook_markdown(cards))
    else:
        print(result.text())
    return 0 if result.passed else 1


def _learner(args: argparse.Namespace) -> int:
    from .learner import build

    # The workbook's notebooks/ sits beside the package in a clone (pip install -e).
    source = Path(args.notebooks) if args.notebooks else Path(__file__).resolve().parent.parent / "notebooks"
    if not source.is_dir():
        raise ConfigError(f"no notebooks folder at {source}: pass --notebooks with the path of "
                          "the workbook's notebooks/ folder (they come with a clone of the "
                          "project, not with the package)")
    try:
        stubbed = build(source, Path(args.out))
    except (FileNotFoundError, ValueError) as exc:
        raise ConfigError(str(exc)) from exc
    for s in stubbed:
        print(f"{s.notebook}: stubbed {', '.join(s.names)}")
    print(f"learner edition in {args.out} ({len(stubbed)} exercise(s))")
    return 0


def _audit(args: argparse.Namespace) -> int:
    from .audit import audit

    report = audit(Path(args.path))
    print(json.dumps(report.to_json(), indent=2) if args.json else report.text())
    return 0 if report.passed else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wslab", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("scenarios", help="list the standard failure scenarios")
    p.add_argument("--json", action="store_true", help="one JSON array")
    p.set_defaults(func=_scenarios)
    p = commands.add_parser("run", help="run one design under one scenario")
    p.add_argument("--design", help="a design name, e.g. naive (or --server and --client)")
    p.add_argument("--scenario", required=True, help="a scenario name (see `scenarios`)")
    p.add_argument("--seed", type=int, help="override the scenario's seed")
    p.add_argument("--clients", type=int, help="override the number of clients (1-1000)")
    p.add_argument("--clock", choices=["virtual", "cpu", "real"],
                   help="lab time: virtual (the default), cpu (virtual + the loop's CPU time) or real")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _add_pair_options(p)
    p.set_defaults(func=_run)
    p = commands.add_parser("grade", help="run designs through the failure scenarios and score them (exit 1 if any fails)")
    p.add_argument("design", nargs="*", help="a design name (e.g. production), a Python file defining handler(websocket, app) and client(app), or a .toml file naming a server and a client command; several for a table")
    _add_pair_options(p)
    p.add_argument("--scenario", action="append", metavar="NAME",
                   help="grade only this scenario (repeatable; default: all)")
    output = p.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true",
                        help="print one JSON object (a list for several designs); no progress")
    output.add_argument("--markdown", action="store_true",
                        help="print the designs × scenarios table in Markdown (as in the README)")
    p.add_argument("--quiet", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=_grade)
    p = commands.add_parser("learner", help="build the learner edition: exercise solutions replaced by stubs")
    p.add_argument("out", help="the folder to write the notebooks to")
    p.add_argument("--notebooks", default=None,
                   help="where the full notebooks are (default: the workbook's notebooks/ folder)")
    p.set_defaults(func=_learner)
    p = commands.add_parser("bench", help="proxy overhead, injected latency accuracy, production vs raw echo, dead-peer detection")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_bench)
    p = commands.add_parser("audit", help="read a WebSocket program for the common bugs (exit 1 if any)")
    p.add_argument("path", help="a Python file (the audit reads Python only)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_audit)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RunError as exc:
        print(f"run failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C: the run was stopped (run_in_lab_loop_sync)
        print("wslab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
