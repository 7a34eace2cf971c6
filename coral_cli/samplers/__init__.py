"""Response-candidate samplers for CORAL (paper §3.3, Algorithm 1): the contract and helpers."""

from coral_cli.samplers.base import Candidates, SampleRequest, Sampler, SamplerEnv

__all__ = ["Candidates", "SampleRequest", "Sampler", "SamplerEnv"]
