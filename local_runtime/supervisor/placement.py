"""Which GPUs each replica sees (`CUDA_VISIBLE_DEVICES`), decided before any worker starts.

Rules, in Xinference's terms:
- CPU models (resolved device "cpu", or `n_gpu` 0/None) see no GPU at all;
- `gpu_idx` given: split evenly between replicas when it divides, otherwise every replica gets
  the whole list (several small models may share one GPU);
- `n_gpu` = k: replica r gets k consecutive GPUs starting at r*k, wrapping around;
- "auto": one GPU per replica, round robin.
"""

from __future__ import annotations

from pathlib import Path

from local_runtime import memory
from local_runtime.resolve import LaunchError
from local_runtime.spec import LaunchSpec, ResolvedSpec
from local_runtime.supervisor.packing import Packer


def gpu_count() -> int:
    """GPUs the NVIDIA driver reports, read from /proc (no torch, no nvidia-smi call)."""
    gpus = Path("/proc/driver/nvidia/gpus")
    try:
        return sum(1 for _ in gpus.iterdir())
    except OSError:
        return 0


def assign(spec: LaunchSpec, device: str, available: int) -> list[list[int] | None]:
    """Per replica: the GPU indices it sees, or None for a CPU worker (no GPU visible)."""
    replicas = spec.replica
    if device != "cuda" or spec.n_gpu in (0, None):
        if spec.gpu_idx:
            raise LaunchError(f"gpu_idx {spec.gpu_idx} was given but this model runs on {device}")
        return [None] * replicas
    if spec.gpu_idx:
        bad = [i for i in spec.gpu_idx if i < 0 or (available and i >= available)]
        if bad:
            raise LaunchError(f"gpu_idx {bad} does not exist here ({available} GPU(s))")
        idx = list(spec.gpu_idx)
        if len(idx) % replicas == 0 and len(idx) >= replicas:
            per = len(idx) // replicas
            return [idx[r * per : (r + 1) * per] for r in range(replicas)]
        return [list(idx) for _ in range(replicas)]
    if available == 0:
        raise LaunchError("this model should run on a GPU but none was found; pass n_gpu=null")
    per = 1 if spec.n_gpu == "auto" else int(spec.n_gpu)
    if per > available:
        raise LaunchError(f"n_gpu={per} asked for, but only {available} GPU(s) exist here")
    return [[(r * per + i) % available for i in range(per)] for r in range(replicas)]


def visible_devices(gpus: list[int] | None) -> str:
    return "" if not gpus else ",".join(str(i) for i in gpus)


def place(spec: LaunchSpec, resolved: ResolvedSpec, packer: Packer) -> list[list[int] | None]:
    """Per replica GPUs, packed by estimated memory when the driver reports free memory.

    Explicit `gpu_idx`, CPU models and machines without nvidia-smi keep the rules of `assign`.
    n_gpu > 1 on vLLM becomes its tensor parallelism; a vLLM sharing a GPU is told its share
    (vLLM otherwise reserves 90 % of the GPU for itself).
    """
    if resolved.device != "cuda" or spec.n_gpu in (0, None) or spec.gpu_idx:
        return assign(spec, resolved.device, gpu_count())
    gpus = {g.index: g for g in packer.gpus()}
    if not gpus:
        return assign(spec, resolved.device, gpu_count())
    need = memory.estimate(
        model_path=resolved.model_path,
        model_format=resolved.model_format,
        size_in_billions=resolved.model_size_in_billions,
        quantization=resolved.quantization,
        context_length=resolved.engine_options.get("context_length") or resolved.context_length,
    )
    n = 1 if spec.n_gpu == "auto" else int(spec.n_gpu)
    placed = packer.place(spec.uid, need, n_gpu=n, replicas=spec.replica)
    if resolved.engine == "vllm":
        opts = resolved.engine_options
        if n > 1:
            opts.setdefault("tensor_parallel_size", n)
        total = min(gpus[i].total for i in placed[0])
        share = need.per_gpu(n) / total if total else 0.9
        opts.setdefault("gpu_memory_utilization", round(min(0.9, max(share, 0.05)), 3))
    return list(placed)
