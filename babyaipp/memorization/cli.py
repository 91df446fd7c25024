"""``babyaipp memo``: list and run the memorization benchmarks.

Nothing that loads torch or matplotlib is imported at load time, so ``babyaipp --help`` stays fast;
the benchmark modules themselves are imported when a command runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from babyaipp.errors import ConfigError, check_choice, check_range
from babyaipp.memorization import base, runner
from babyaipp.utils import resolve_device

DEFAULT_OUT = "runs/memo"

_MEMO_HELP = """\
Re-implementations of papers on memorization in neural networks, each reduced to a CPU-sized
experiment that measures whether the paper's central claim holds. Every run writes
DIR/NAME/result.json (metrics, named checks, whether the claim held) and DIR/NAME/figure.png.

examples:
  babyaipp memo list
  babyaipp memo run rote_learning --quick
  babyaipp memo run elr --param lam=3 --param beta=0.7
  babyaipp memo run all --out runs/memo
  babyaipp memo run all --seeds 0-4 --out runs/memo-seeds   # claims judged over five seeds
"""

_RUN_HELP = """\
Run one benchmark, or all of them in order with NAME=all.

Exit status: 0 if every claim that was run held, 1 if one did not (or a module failed under
'all'), 2 for bad input (unknown module, unknown or out-of-range --param, a seed outside
[0, 2^32-1], an --out that is a file or not writable; checked before anything runs).

With --seeds (e.g. 0-4) each module runs once per seed into DIR/NAME/seedS/; every check is
reported as held k/n with its margin (measured - threshold) over the seeds, and a claim holds
when it held on at least 4 of 5 seeds (ceil(0.8 n)) and no sanity check failed.

With 'all', a module that raises is recorded as failed and the run goes on; DIR/summary.md (a
markdown table) and DIR/summary.json are written at the end.
"""


def add_parsers(subparsers: Any) -> None:
    """Add ``memo list`` and ``memo run`` under the top-level ``babyaipp`` parser."""
    memo = subparsers.add_parser(
        "memo",
        help="list and run the memorization benchmarks (paper re-implementations)",
        description=_MEMO_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    memo_sub = memo.add_subparsers(dest="memo_command", metavar="SUBCOMMAND")
    memo.set_defaults(func=lambda args: _print_help(memo))

    lst = memo_sub.add_parser(
        "list",
        help="one line per benchmark: name, paper, claim",
        description="List the registered benchmarks with their paper and claim.",
    )
    lst.set_defaults(func=cmd_list)

    run = memo_sub.add_parser(
        "run",
        help="run one benchmark (or 'all') and write result.json and figure.png",
        description=_RUN_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("name", metavar="NAME", help="benchmark name from 'babyaipp memo list', or 'all'")
    run.add_argument(
        "--quick",
        action="store_true",
        help="seconds-long variant with smaller sizes (used by the tests); default: full run",
    )
    run.add_argument("--seed", type=int, default=0, help="seed for every random draw (default: 0)")
    run.add_argument(
        "--seeds",
        metavar="LIST",
        default=None,
        help="run on several seeds, e.g. 0-4 or 0,2,5, and judge each claim over them "
        "(held on >= 4 of 5); overrides --seed",
    )
    run.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="run up to N (module, seed) runs at once in worker processes (default: 1); results do not depend on N",
    )
    run.add_argument(
        "--out", metavar="DIR", default=DEFAULT_OUT, help=f"results go to DIR/NAME/ (default: {DEFAULT_OUT})"
    )
    run.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="cpu",
        help="torch device; the benchmarks are sized for a CPU (default: cpu)",
    )
    run.add_argument(
        "--param",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="override one hyperparameter of the module's config; repeatable (only with a single NAME, not 'all')",
    )
    run.set_defaults(func=cmd_run)


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 0


def parse_params(items: list[str]) -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}``; the module's config converts the types."""
    params: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--param {item!r} is not of the form KEY=VALUE")
        params[key.strip()] = value.strip()
    return params


def cmd_list(args: argparse.Namespace) -> int:
    """Print ``name  paper`` and the claim, one benchmark per block, in registry order."""
    width = max(map(len, base.MODULES))
    for name in base.MODULES:
        try:
            spec = base.load_spec(name)
        except Exception as err:  # noqa: BLE001 - not written yet, extra missing, or broken: list the rest
            print(f"{name:<{width}}  (not available: {type(err).__name__}: {err})")
            continue
        print(f"{name:<{width}}  {spec.paper}\n{'':<{width}}  claim: {spec.claim}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Run one module or all of them; return 0 if every claim held, else 1."""
    check_choice("memorization module", args.name, [*base.MODULES, "all"])
    params = parse_params(args.param)
    seeds = runner.parse_seeds(args.seeds) if args.seeds is not None else [base.check_seed(args.seed)]
    check_range("--jobs", args.jobs, 1, os.cpu_count() or 1)
    device = resolve_device(args.device)
    if args.name == "all" and params:
        raise ConfigError("--param applies to a single module's config; it cannot be used with 'all'")
    if args.name != "all":  # bad --param values fail here, before anything runs
        base.make_config(base.load_spec(args.name), quick=args.quick, seed=seeds[0], device=device, overrides=params)
    runner.check_writable_dir(args.out)
    if args.name == "all" or len(seeds) > 1 or args.jobs > 1:
        return _run_all(args, device, seeds, params)
    return _run_one(args, device, params)


def _run_one(args: argparse.Namespace, device: str, params: dict[str, str]) -> int:
    out = Path(args.out) / args.name
    result = base.run_module(args.name, quick=args.quick, seed=args.seed, device=device, out=out, overrides=params)
    failed = [k for k, ok in result.checks.items() if not ok]
    print(f"{result.name}: {result.paper}")
    print(f"  claim:   {result.claim}")
    note = f" (failed checks: {', '.join(failed)})" if failed else ""
    print(f"  held:    {'yes' if result.held else 'no'}{note}")
    print(f"  figures: {runner.format_figures(result.key_figures)}")
    print(f"  seconds: {result.seconds:.1f}")
    print(f"  result:  {out / 'result.json'}")
    if result.figure:
        print(f"  figure:  {result.figure}")
    return 0 if result.held else 1


def _run_all(args: argparse.Namespace, device: str, seeds: list[int], params: dict[str, str]) -> int:
    """Every module (or one, over several seeds); prints one line per run and the verdicts."""
    from tqdm import tqdm

    names = list(base.MODULES) if args.name == "all" else [args.name]
    with tqdm(total=len(names) * len(seeds), desc="memo", unit="run", file=sys.stderr) as bar:
        bar.set_postfix_str(names[0])

        def on_done(name: str, result: base.MemoResult) -> None:
            error = runner.error_of(result)
            status = "held" if result.held else (f"FAILED ({error})" if error else "not held")
            seed = result.config.get("seed", "?")
            bar.write(f"{name} (seed {seed}): {status} in {result.seconds:.1f}s", file=sys.stderr)
            bar.update(1)
            bar.set_postfix_str(name)

        results = runner.run_all(
            args.out,
            names=names,
            quick=args.quick,
            seeds=seeds,
            device=device,
            on_done=on_done,
            overrides=params,
            jobs=args.jobs,
        )
    out = Path(args.out)
    if len(seeds) > 1:
        modules = json.loads((out / "summary.json").read_text())["modules"]
        for m in modules:
            print(
                f"{m['name']}: claim held on {m['held_seeds']}/{len(m['seeds'])} seeds -> "
                f"{'holds' if m['held'] else 'does not hold'}"
            )
        held, total = sum(m["held"] for m in modules), len(modules)
    else:
        held, total = sum(r.held for r in results), len(results)
    print(f"{held} of {total} claims held; summary: {out / 'summary.md'}, {out / 'summary.json'}")
    return 0 if held == total else 1
