"""The public API for plugins: everything a third-party reward model or sampler may import.

Built-in plugins (`plugins/`) import from here only, so internal modules can move without
breaking anyone. A reward is a `RewardModel` subclass (or a plain function f(contexts, responses)
-> scores in [0, 1]); a sampler is a class with `on_policy` and `sample(SampleRequest) ->
Candidates`. Publish either under the entry-point group `coral.rewards` / `coral.samplers`, or
call `REWARDS.register(name, obj)` / `SAMPLERS.register(name, obj)`.
"""

from coral_cli.config.fields import opt
from coral_cli.config.schema import GenerateConfig, RetrieverConfig
from coral_cli.errors import AssetError, ConfigError, CoralError
from coral_cli.generator.core.batch import Responses
from coral_cli.generator.core.policy import Policy
from coral_cli.hub import no_network
from coral_cli.registry import REWARDS, SAMPLERS
from coral_cli.rewards.backbone import backbone_from_arch, load_backbone
from coral_cli.rewards.base import NoArgs, RewardModel, SpecialIds
from coral_cli.rewards.heads import POOLING_HELP, POOLINGS, MLPHead, pool, resolve_pooling
from coral_cli.rewards.negatives import sample_negatives
from coral_cli.rewards.packing import pack_cross_pair, pad_ids, wrap_single
from coral_cli.samplers.base import Candidates, SampleRequest, Sampler, SamplerEnv
from coral_cli.training.distributed import unwrap

__all__ = [
    "POOLINGS", "POOLING_HELP", "REWARDS", "SAMPLERS", "AssetError", "Candidates", "ConfigError", "CoralError",
    "GenerateConfig", "MLPHead", "NoArgs", "Policy", "Responses", "RetrieverConfig", "RewardModel",
    "SampleRequest", "Sampler", "SamplerEnv", "SpecialIds", "backbone_from_arch", "load_backbone", "no_network",
    "opt", "pack_cross_pair", "pad_ids", "pool", "resolve_pooling", "sample_negatives", "unwrap", "wrap_single",
]
