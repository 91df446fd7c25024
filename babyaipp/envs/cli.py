"""``babyaipp levels`` and ``babyaipp play``."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from babyaipp.defaults import DEFAULT_TEXT
from babyaipp.envs import dynamics
from babyaipp.envs.levels import TASKS
from babyaipp.envs.registration import ENV_IDS, parse_env_id
from babyaipp.envs.rendering import record_oracle_episode, save_episode
from babyaipp.envs.text import TEXT_MODES
from babyaipp.errors import ConfigError, check_choice, check_range


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "levels",
        help="list every registered BabyAI++ id with a one-line description",
        description="List every registered BabyAIPP/<Task>-<Easy|Hard>-<Train|Test|TargetPairOnly>-v0 id.",
    )
    p.add_argument("--task", help="only ids of this task (e.g. GoToRedBall)")
    p.set_defaults(func=_levels)

    p = sub.add_parser(
        "play",
        help="render an episode played by the oracle to a PNG or GIF",
        description=(
            "Play one episode of ID with the oracle (the planner that knows the floor dynamics) and "
            "render it: .gif keeps every frame, .png shows the first and last frames side by side."
        ),
    )
    p.add_argument("id", help="env id, e.g. BabyAIPP/GoToRedBall-Easy-Train-v0 (see `babyaipp levels`)")
    p.add_argument("--seed", type=int, default=0, help="episode seed (default 0)")
    p.add_argument("--out", help="output file, .png or .gif (default: <Task>-<Difficulty>-<Split>-seed<N>.gif)")
    p.add_argument(
        "--text", default=DEFAULT_TEXT, help=f"description mode: {', '.join(TEXT_MODES)} (default: {DEFAULT_TEXT})"
    )
    p.add_argument("--tile-size", type=int, default=24, help="pixels per grid cell (default 24)")
    p.set_defaults(func=_play)


def _levels(args: argparse.Namespace) -> int:
    if args.task:
        check_choice("task", args.task, TASKS)
    split_note = {
        "Train": "no held-out colour/property pair",
        "Test": "any pair, held-out ones at their natural rate",
        "TargetPairOnly": "always at least one held-out pair",
    }
    for id in ENV_IDS:
        task, difficulty, split = parse_env_id(id)
        if args.task and task != args.task:
            continue
        props = "/".join(dynamics.DIFFICULTY_PROPERTIES[difficulty])
        print(f"{id:48s} {TASKS[task].summary} Floor: {props}; {split_note[split]}.")
    return 0


def _play(args: argparse.Namespace) -> int:
    task, difficulty, split = parse_env_id(args.id)
    check_range("--seed", args.seed, 0)
    check_range("--tile-size", args.tile_size, 1, 512)
    out = args.out or f"{task}-{difficulty}-{split}-seed{args.seed}.gif"
    _check_out_file(out)
    episode = record_oracle_episode(args.id, args.seed, tile_size=args.tile_size, text=args.text)
    save_episode(episode, out)
    outcome = "success" if episode.success else "failure"
    print(f"mission:     {episode.mission}")
    print(f"description: {episode.description or '(none)'}")
    print(f"dynamics:    {episode.dynamics}")
    print(f"oracle:      {outcome} in {len(episode.actions)} steps, return {episode.total_reward:.3f}")
    print(f"wrote {out}")
    return 0


def _check_out_file(out: str) -> None:
    """``--out`` must be a .png/.gif file path in a writable directory: checked before playing."""
    path = Path(out)
    if path.is_dir():
        raise ConfigError(f"--out {out!r} is a directory; give a file name ending in .png or .gif")
    if path.suffix.lower() not in (".png", ".gif"):
        raise ConfigError(f"--out {out!r} must end in .png or .gif")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out!r} cannot be written: {str(parent)!r} is not a writable directory")
