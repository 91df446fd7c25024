"""The ``babyaipp`` command line.

Each subsystem contributes its sub-commands through ``add_parsers(subparsers)`` in its own
``cli`` module; those modules import only argparse at load time so ``babyaipp --help`` is fast.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence

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


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``timeout``, a batch scheduler), raised like Ctrl-C so the same cleanup runs:
    training checkpoints, level workers stop, temporary directories are removed."""


#: Exit status after SIGTERM, as a shell reports a process it killed (128 + 15).
EXIT_TERMINATED = 128 + signal.SIGTERM
#: Exit status when the reader of stdout went away (``babyaipp levels | head``): 128 + SIGPIPE.
EXIT_BROKEN_PIPE = 128 + 13


_sigterm_received = False


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """While a command runs, SIGTERM raises :class:`Terminated` in the main thread (then is ignored,
    so the cleanup it starts is not cut short by a second one)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: object) -> None:
        global _sigterm_received
        _sigterm_received = True  # native code (Ray's wait) may turn the exception into a plain KeyboardInterrupt
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _silence_stdout() -> None:
    """The reader of stdout has gone: point stdout at /dev/null so Python's exit flush stays quiet."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    global _sigterm_received
    _sigterm_received = False
    try:
        with _sigterm_as_interrupt():
            code = args.func(args)
            sys.stdout.flush()
    except BabyAIPPError as err:
        print(f"babyaipp {args.command}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt as interrupt:
        detail = f" ({interrupt})" if str(interrupt) else ""
        terminated = isinstance(interrupt, Terminated) or _sigterm_received
        print(f"babyaipp {args.command}: {'terminated' if terminated else 'interrupted'}{detail}", file=sys.stderr)
        return EXIT_TERMINATED if terminated else 130
    except OSError as err:  # the filesystem refused: disk full, permission denied, not a directory
        print(f"babyaipp {args.command}: error: {_os_error_line(err)}", file=sys.stderr)
        return 2
    return int(code or 0)


def _os_error_line(err: OSError) -> str:
    """One line for an OSError: what failed, on which path, and for a full disk what to do."""
    where = f"{err.filename}: " if err.filename else ""
    line = f"{where}{err.strerror or err}"
    if err.errno == errno.ENOSPC:
        line += " (free some space, then run the command again)"
    return line


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
