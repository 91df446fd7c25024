"""The ``babyaipp`` command line.

Each subsystem contributes its sub-commands through ``add_parsers(subparsers)`` in its own
``cli`` module; those modules import nothing that loads torch at load time, so ``babyaipp --help``
is fast.

A command module that cannot be imported stops the command line with one line naming the module
and the error (a broken install must not hide commands silently), except where what is missing is
the dependency of an optional extra (:data:`OPTIONAL_EXTRAS`): then the other commands work, and
invoking one that needs it says which extra to install.
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
from collections.abc import Callable, Iterator, Sequence

from babyaipp import __version__
from babyaipp.errors import BabyAIPPError

#: Modules that add sub-commands, in the order they appear in ``--help``, with the commands each adds
#: (named here so that a command whose module lacks an optional extra can still say what to install).
COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "babyaipp.envs.cli": ("levels", "play"),
    "babyaipp.agents.cli": ("train", "demos"),
    "babyaipp.agents.evaluation_cli": ("eval",),
    "babyaipp.experiments.cli": ("compare", "sweep"),
    "babyaipp.memorization.cli": ("memo",),
}
#: Top-level packages of the optional extras (pyproject.toml's ``[project.optional-dependencies]``).
OPTIONAL_EXTRAS: dict[str, str] = {
    "stable_baselines3": "agents",
    "sb3_contrib": "agents",
    "tensorboard": "agents",
    "rich": "agents",
    "sklearn": "memo",
    "faiss": "memo",
    "flwr": "memo",
    "opacus": "memo",
    "minari": "imitation",
    "h5py": "imitation",
    "ray": "sweep",
    "rliable": "sweep",
    "arch": "sweep",
    "pandas": "sweep",
    "pygame": "render",
    "torchrl": "torchrl",
    "tensordict": "torchrl",
}
#: Exit status when a command module cannot be loaded, or a command needs an extra not installed.
EXIT_NOT_INSTALLED = 1


class CommandModuleError(BabyAIPPError):
    """A command module failed to import for a reason other than a missing optional extra."""


def missing_extra(err: ImportError) -> str | None:
    """The optional extra whose package ``err`` failed to find, or None if it is not one of them."""
    if not isinstance(err, ModuleNotFoundError) or not err.name:
        return None
    return OPTIONAL_EXTRAS.get(err.name.split(".")[0])


def _install_line(command: str, extra: str, err: ImportError) -> str:
    return f"babyaipp {command}: error: needs the '{extra}' extra ({err}); install it: pip install 'babyaipp[{extra}]'"


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
    for name, commands in COMMAND_MODULES.items():
        try:
            module = importlib.import_module(name)
        except ImportError as err:
            extra = missing_extra(err)
            if extra is None:
                raise CommandModuleError(f"cannot load the commands of {name}: {type(err).__name__}: {err}") from err
            for command in commands:  # each says what to install when invoked
                placeholder = sub.add_parser(
                    command, help=f"(needs: pip install 'babyaipp[{extra}]')", add_help=False, prefix_chars="\0"
                )  # takes every argument as it is, so that --help and options too get the one line
                placeholder.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
                placeholder.set_defaults(func=_not_installed(command, extra, err))
            continue
        module.add_parsers(sub)
    return parser


def _not_installed(command: str, extra: str, err: ImportError) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        print(_install_line(command, extra, err), file=sys.stderr)
        return EXIT_NOT_INSTALLED

    return run


def _version() -> str:
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
    try:
        parser = build_parser()
    except CommandModuleError as err:
        print(f"babyaipp: error: {err}", file=sys.stderr)
        return EXIT_NOT_INSTALLED
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
    except ImportError as err:  # a package of an optional extra, imported when the command runs
        extra = missing_extra(err)
        if extra is None:
            raise
        print(_install_line(args.command, extra, err), file=sys.stderr)
        return EXIT_NOT_INSTALLED
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
