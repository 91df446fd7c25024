"""The package's defaults, each stated once: the library's signatures, the CLIs' options and their
``--help`` text all read them from here.

A leaf module: it imports nothing, so the command line can read it without loading torch.
"""

from __future__ import annotations

#: The env a run trains on when none is named (``babyaipp train``, ``babyaipp demos``, sweeps).
DEFAULT_ENV = "BabyAIPP/GoToRedBall-Easy-Train-v0"
#: Feature extractor of a run when none is named.
DEFAULT_MODEL = "image"
#: Description mode of a run when none is named.
DEFAULT_TEXT = "full"
#: Torch device of training: ``"auto"`` is CUDA when torch sees it, else the CPU.
DEFAULT_DEVICE = "auto"
#: Training steps of a run (and of each sweep trial).
DEFAULT_STEPS = 100_000
#: Parallel training envs of a run (and of each sweep trial).
DEFAULT_N_ENVS = 8
#: How training envs are stepped: the batched engine (``"batched"``; ``"device-levels"`` draws its levels on
#: its device) or single envs (``"gym"``).
DEFAULT_ENGINE = "batched"
#: Training steps between checkpoints (0: none); what ``--resume`` continues from.
DEFAULT_CHECKPOINT_EVERY = 50_000
#: Training algorithm: PPO (``"ppo"``) or behaviour cloning of demonstrations (``"bc"``).
DEFAULT_ALGO = "ppo"
#: The PPO loop: stable-baselines3's (``"sb3"``) or the device-resident one (``"device"``).
DEFAULT_TRAINER = "sb3"
#: Passes of behaviour cloning over the demonstrations.
DEFAULT_BC_EPOCHS = 20

#: The first evaluation seed. Training, demonstration and pool levels use seeds below it, so an
#: evaluation (``env.reset(seed=EVAL_SEED_START + k)``) never plays a level a policy trained on.
EVAL_SEED_START = 10**6
#: Evaluation episodes per split.
DEFAULT_EVAL_EPISODES = 1000
#: Torch device of the policy under evaluation.
DEFAULT_EVAL_DEVICE = "cpu"
#: Envs a policy is evaluated on at once.
DEFAULT_EVAL_N_ENVS = 32
#: Evaluate with the policy's argmax (True) or with actions sampled from it (False). Sampled, as
#: BabyAI evaluates its agents: a greedy policy can loop forever in a partially observed room.
DEFAULT_GREEDY = False
