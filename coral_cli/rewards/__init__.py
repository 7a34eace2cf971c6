"""Response retrievers f_R(c, r) in (0, 1): the R3 reward (paper §3.1) and the MAUDE-style evaluators."""

from coral_cli.rewards.base import RewardModel
from coral_cli.rewards.checkpoint import build_reward, load_reward, save_reward

__all__ = ["RewardModel", "build_reward", "load_reward", "save_reward"]
