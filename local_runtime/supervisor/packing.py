"""Pack models onto GPUs by memory, several per GPU where they fit.

Xinference gives each model a whole GPU and answers "no available slot" when models run out of
GPUs, however small they are. Here each replica needs `MemoryEstimate.per_gpu(n_gpu)` bytes on
each of its `n_gpu` GPUs (n_gpu > 1: one tensor-parallel set, for vLLM), and goes where it fits
tightest (best fit), which keeps large holes free for large models.

Free memory is what the driver reports (nvidia-smi, injectable for tests) but never more than
total minus what this supervisor already placed: a model that is still loading has not taken its
memory yet, and two launches in a row must not both count on the same free bytes.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from local_runtime.memory import GIB, MemoryEstimate
from local_runtime.resolve import LaunchError


@dataclass(frozen=True, slots=True)
class Gpu:
    index: int
    total: int  # bytes
    free: int  # bytes


def query_gpus() -> list[Gpu]:
    """The driver's view, via nvidia-smi (no NVML binding needed); [] without NVIDIA GPUs."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run(  # noqa: S603 - fixed arguments
            [exe, "--query-gpu=index,memory.total,memory.free", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3 and all(p.isdigit() for p in parts):
            gpus.append(Gpu(int(parts[0]), int(parts[1]) * 1024**2, int(parts[2]) * 1024**2))
    return gpus


def _gib(n: int) -> str:
    return f"{n / GIB:.1f} GiB"


class Packer:
    def __init__(self, query: Callable[[], list[Gpu]] = query_gpus) -> None:
        self._query = query
        self._placed: dict[str, dict[int, int]] = {}  # uid -> gpu index -> bytes

    def gpus(self) -> list[Gpu]:
        """GPUs with what is free for a new model."""
        reserved: dict[int, int] = {}
        for per_gpu in self._placed.values():
            for idx, n in per_gpu.items():
                reserved[idx] = reserved.get(idx, 0) + n
        return [
            Gpu(g.index, g.total, max(0, min(g.free, g.total - reserved.get(g.index, 0))))
            for g in self._query()
        ]

    def place(
        self, uid: str, need: MemoryEstimate, *, n_gpu: int, replicas: int
    ) -> list[list[int]]:
        """Per replica: the GPU indices it runs on. Raises LaunchError saying what is missing."""
        gpus = self.gpus()
        if n_gpu > len(gpus):
            raise LaunchError(f"n_gpu={n_gpu} asked for, but only {len(gpus)} GPU(s) exist here")
        per = need.per_gpu(n_gpu)
        free = {g.index: g.free for g in gpus}
        placement: list[list[int]] = []
        for r in range(replicas):
            fits = sorted((f, i) for i, f in free.items() if f >= per)
            if len(fits) < n_gpu:
                best = ", ".join(f"GPU {i}: {_gib(f)}" for i, f in sorted(free.items()))
                raise LaunchError(
                    f"{uid!r} needs about {_gib(per)} on each of {n_gpu} GPU(s)"
                    f"{f' (replica {r + 1} of {replicas})' if replicas > 1 else ''}; free now: "
                    f"{best or 'no GPU'}. Unload a model, lower context_length, pick a smaller "
                    "quantization, or raise n_gpu to split it (tensor parallel)"
                )
            chosen = sorted(i for _, i in fits[:n_gpu])  # tightest fits first
            for i in chosen:
                free[i] -= per
            placement.append(chosen)
        ledger: dict[int, int] = {}
        for chosen in placement:
            for i in chosen:
                ledger[i] = ledger.get(i, 0) + per
        self._placed[uid] = ledger
        return placement

    def release(self, uid: str) -> None:
        self._placed.pop(uid, None)

    def placed(self) -> dict[str, dict[int, int]]:
        return {uid: dict(v) for uid, v in self._placed.items()}
