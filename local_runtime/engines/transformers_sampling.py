"""How the transformers engine picks the next token: the OpenAI sampling fields (and the common
vLLM/llama.cpp extensions) parsed once per request, then applied to a row of logits per step.

Order per step, as vLLM and transformers' own processors apply them: `logit_bias`, then the
penalties on raw logits (`repetition_penalty` over prompt and output, `frequency_penalty` and
`presence_penalty` over the output so far), then greedy argmax -- or temperature, `top_k`,
`top_p`, `min_p` and a draw from the row's own generator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from local_runtime.engines.base import EngineError

if TYPE_CHECKING:
    import torch

MAX_STOPS = 4  # OpenAI's limit
MAX_LOGIT_BIAS = 300  # OpenAI's limit on logit_bias entries


@dataclass
class Sampling:
    """One request's sampling fields, validated."""

    max_tokens: int | None
    temperature: float
    top_p: float
    seed: int | None
    stops: list[str] = field(default_factory=list)
    top_k: int | None = None  # None: the checkpoint's default; 0 or -1: off
    min_p: float = 0.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    repetition_penalty: float = 1.0
    logit_bias: dict[int, float] = field(default_factory=dict)

    @property
    def adjusts_logits(self) -> bool:
        """Whether the logits need this request's history before any token is picked."""
        return bool(
            self.logit_bias
            or self.frequency_penalty
            or self.presence_penalty
            or self.repetition_penalty != 1.0
        )

    def generate_kwargs(self, default_top_k: int = 0) -> dict[str, Any]:
        """The same sampling for transformers' own `generate()` (the one-at-a-time path)."""
        if self.temperature == 0.0:
            return {"do_sample": False}
        top_k = default_top_k if self.top_k is None else max(self.top_k, 0)
        kw: dict[str, Any] = {
            "do_sample": True,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": top_k,
        }
        if self.min_p:
            kw["min_p"] = self.min_p
        return kw


def _number(body: dict[str, Any], key: str, default: float, lo: float, hi: float) -> float:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EngineError(f"{key} must be a number", code="invalid_value")
    if not lo <= value <= hi:
        raise EngineError(f"{key} must be between {lo} and {hi}; got {value}", code="invalid_value")
    return float(value)


def _integer(body: dict[str, Any], key: str, lo: int) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise EngineError(f"{key} must be an integer >= {lo}; got {value!r}", code="invalid_value")
    return value


def _logit_bias(value: Any, vocab_size: int) -> dict[int, float]:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_LOGIT_BIAS:
        raise EngineError(
            f"logit_bias must be an object of at most {MAX_LOGIT_BIAS} token ids to biases",
            code="invalid_value",
        )
    out: dict[int, float] = {}
    for key, bias in value.items():
        token = int(key) if isinstance(key, str) and key.isdigit() else -1
        if not 0 <= token < vocab_size:
            raise EngineError(
                f"logit_bias key {key!r} is not a token id of this model (0..{vocab_size - 1})",
                code="invalid_value",
            )
        if isinstance(bias, bool) or not isinstance(bias, int | float) or not -100 <= bias <= 100:
            raise EngineError(
                f"logit_bias values must be numbers between -100 and 100; got {bias!r}",
                code="invalid_value",
            )
        out[token] = float(bias)
    return out


def parse_sampling(body: dict[str, Any], vocab_size: int) -> Sampling:
    if body.get("n") not in (None, 1):
        raise EngineError("this engine returns one choice per request (n=1)", code="invalid_value")
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
    ):
        raise EngineError("max_tokens must be a positive integer", code="invalid_value")
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    if len(stops) > MAX_STOPS or not all(isinstance(s, str) and s for s in stops):
        raise EngineError(f"stop must be a string or up to {MAX_STOPS} non-empty strings")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise EngineError("seed must be an integer", code="invalid_value")
    repetition = _number(body, "repetition_penalty", 1.0, 0.0, 2.0)
    if repetition == 0.0:
        raise EngineError("repetition_penalty must be above 0 (1 is off)", code="invalid_value")
    return Sampling(
        max_tokens=max_tokens,
        temperature=_number(body, "temperature", 1.0, 0.0, 2.0),
        top_p=_number(body, "top_p", 1.0, 0.0, 1.0) or 1.0,
        seed=seed,
        stops=stops,
        top_k=_integer(body, "top_k", -1),
        min_p=_number(body, "min_p", 0.0, 0.0, 1.0),
        frequency_penalty=_number(body, "frequency_penalty", 0.0, -2.0, 2.0),
        presence_penalty=_number(body, "presence_penalty", 0.0, -2.0, 2.0),
        repetition_penalty=repetition,
        logit_bias=_logit_bias(body.get("logit_bias"), vocab_size),
    )


def adjust_logits(
    scores: torch.Tensor, sampling: Sampling, prompt: list[int], output: list[int]
) -> None:
    """Apply one row's bias and penalties to its logits (1-D, float), in place."""
    import torch

    device = scores.device
    if sampling.logit_bias:
        ids = torch.tensor(list(sampling.logit_bias), device=device)
        scores[ids] += torch.tensor(list(sampling.logit_bias.values()), device=device)
    if sampling.repetition_penalty != 1.0:
        seen = torch.tensor(sorted({*prompt, *output}), device=device)
        picked = scores[seen]
        p = sampling.repetition_penalty
        scores[seen] = torch.where(picked > 0, picked / p, picked * p)
    if output and (sampling.frequency_penalty or sampling.presence_penalty):
        counts = torch.bincount(torch.tensor(output, device=device), minlength=scores.shape[0])
        counts = counts[: scores.shape[0]].to(scores.dtype)
        scores -= counts * sampling.frequency_penalty
        scores -= (counts > 0).to(scores.dtype) * sampling.presence_penalty


def draw_probs(scores: torch.Tensor, params: list[Sampling], default_top_k: int) -> torch.Tensor:
    """Temperature, top-k, top-p and min-p over rows of logits: unnormalized probabilities to
    draw from (`torch.multinomial` normalizes)."""
    import torch

    temps = torch.tensor([[p.temperature] for p in params], device=scores.device)
    scores = scores / temps
    vocab = scores.shape[-1]
    for j, p in enumerate(params):
        k = default_top_k if p.top_k is None else p.top_k
        if 0 < k < vocab:
            kth = scores[j].topk(k).values[-1]
            scores[j] = scores[j].masked_fill(scores[j] < kth, float("-inf"))
    probs = scores.softmax(dim=-1)
    if any(p.top_p < 1.0 for p in params):
        top_p = torch.tensor([[p.top_p] for p in params], device=scores.device)
        ranked, order = probs.sort(dim=-1, descending=True)
        ranked = ranked.masked_fill(ranked.cumsum(dim=-1) - ranked > top_p, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, ranked)
    if any(p.min_p for p in params):
        min_p = torch.tensor([[p.min_p] for p in params], device=scores.device)
        floor = probs.max(dim=-1, keepdim=True).values * min_p
        probs = probs.masked_fill(probs < floor, 0.0)
    return probs
