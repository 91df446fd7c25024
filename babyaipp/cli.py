"""The ``babyaipp`` command line.

Each subsystem contributes its sub-commands through ``add_parsers(subparsers)`` in its own
``cli`` module; those modules import only argparse at load time so ``babyaipp --help`` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from babyaipp.errors import BabyAIPPError

#: Modules that add sub-commands, in the order they appear in ``--help``.
COMMAND_MODULES = (
    "babyaipp.envs.cli",
    "babyaipp.agents.cli",
    "babyaipp.agents.evaluation_cli",
    "babyaipp.memorization.cli",
    "babyaipp.experiments.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="babyaipp",
        description=(
            "BabyAI++: grid worlds whose floor dynamics change every episode and are described in "
            "text. List levels, watch the oracle play, train and evaluate baseline agents, and run "
            "the memorization benchmarks."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:  # a subsystem not built yet, or its extra not installed
            if err.name and err.name.startswith("babyaipp"):
                continue
            raise
        module.add_parsers(sub)
    return parser


def _version() -> str:
    from babyaipp import __version__

    return f"babyaipp {__version__}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        code = args.func(args)
    except BabyAIPPError as err:
        print(f"babyaipp {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:
        detail = f" ({interrupt})" if str(interrupt) else ""
        print(f"babyaipp {args.command}: interrupted{detail}", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
