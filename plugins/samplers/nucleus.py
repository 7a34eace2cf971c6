"""On-policy candidates: nucleus samples of the generator itself (paper §3.3: nucleus rather than
pure sampling, which can pick very unlikely tokens). No gradient, KV-cached, on the device."""

from __future__ import annotations

from coral_cli.api import Candidates, GenerateConfig, SamplerEnv, SampleRequest, unwrap


class NucleusSampler:
    """On-policy: a nucleus (top-p) sample from the generator being trained."""

    on_policy = True

    def __init__(self, env: SamplerEnv) -> None:
        self.env = env
        self.decoding = GenerateConfig(strategy="nucleus", top_p=env.top_p, temperature=env.temperature,
                                       max_new_tokens=env.max_new_tokens, min_new_tokens=1,
                                       kv_cache=env.kv_cache)

    def sample(self, request: SampleRequest) -> Candidates:
        model = unwrap(request.model)  # generate on the module inside a DDP wrapper
        was_training = model.training
        model.eval()  # sample the policy itself, without dropout noise
        try:
            out = self.env.policy.sample(model, request.prompt_ids, request.prompt_mask, self.decoding, request.k,
                                         self.env.bf16)
        finally:  # a failed sample (e.g. out of memory, retried smaller) must not leave dropout off for training
            model.train(was_training)
        return Candidates(out.ids.clone(), out.mask.clone(), out.ended.clone())  # out of inference mode
