"""Placement by memory: several models per GPU, tensor-parallel sets, readable refusals."""

from __future__ import annotations

import pytest

from local_runtime.memory import GIB, MemoryEstimate
from local_runtime.resolve import LaunchError
from local_runtime.spec import LaunchSpec, ResolvedSpec
from local_runtime.supervisor import placement
from local_runtime.supervisor.packing import Gpu, Packer


def need(gib: float) -> MemoryEstimate:
    """An estimate whose per-GPU total is exactly `gib` GiB on one GPU."""
    est = MemoryEstimate(weights=0, kv_cache=0, overhead=int(gib * GIB))
    assert est.total == int(gib * GIB)
    return est


def packer(*free_total: tuple[float, float]) -> Packer:
    gpus = [Gpu(i, int(t * GIB), int(f * GIB)) for i, (f, t) in enumerate(free_total)]
    return Packer(query=lambda: gpus)


def test_several_small_models_share_one_gpu():
    p = packer((24, 24), (24, 24))
    spots = [p.place(f"m{i}", need(5), n_gpu=1, replicas=1)[0] for i in range(4)]
    assert spots == [[0], [0], [0], [0]]  # best fit keeps GPU 1 whole for a big model
    assert p.place("big", need(20), n_gpu=1, replicas=1) == [[1]]
    assert [g.free // GIB for g in p.gpus()] == [4, 4]


def test_best_fit_takes_the_tightest_gpu():
    p = packer((30, 80), (12, 80), (70, 80))
    assert p.place("m", need(10), n_gpu=1, replicas=1) == [[1]]


def test_replicas_spread_when_one_gpu_is_full():
    p = packer((10, 24), (10, 24))
    assert p.place("m", need(8), n_gpu=1, replicas=2) == [[0], [1]]


def test_tensor_parallel_set_gets_a_slice_on_each_gpu():
    p = packer((40, 80), (40, 80), (80, 80))
    est = MemoryEstimate(weights=60 * GIB, kv_cache=0, overhead=0)
    per = est.per_gpu(2)
    assert est.total > 40 * GIB > per  # too big for one of the half-used GPUs, fine split
    assert p.place("tp", est, n_gpu=2, replicas=1) == [[0, 1]]


def test_no_room_says_what_is_free():
    p = packer((6, 24), (3, 24))
    with pytest.raises(LaunchError) as info:
        p.place("m", need(8), n_gpu=1, replicas=1)
    assert "needs about 8.0 GiB" in info.value.message
    assert "GPU 0: 6.0 GiB" in info.value.message and "GPU 1: 3.0 GiB" in info.value.message


def test_more_gpus_than_exist_is_refused():
    with pytest.raises(LaunchError, match="only 1 GPU"):
        packer((80, 80)).place("m", need(1), n_gpu=2, replicas=1)


def test_placed_memory_counts_before_the_driver_sees_it():
    p = packer((24, 24))  # the driver still reports 24 free: the first model is loading
    p.place("a", need(16), n_gpu=1, replicas=1)
    with pytest.raises(LaunchError):
        p.place("b", need(16), n_gpu=1, replicas=1)
    p.release("a")
    assert p.place("b", need(16), n_gpu=1, replicas=1) == [[0]]


def _resolved(**kw: object) -> ResolvedSpec:
    base = {"uid": "q", "model_name": "q", "model_type": "llm", "engine": "vllm",
            "model_format": "pytorch", "model_path": "/nonexistent", "device": "cuda",
            "model_size_in_billions": 7.0}  # fmt: skip
    return ResolvedSpec.model_validate({**base, **kw})


def test_vllm_gets_tensor_parallelism_and_its_share_of_the_gpu():
    p = packer((80, 80), (80, 80))
    resolved = _resolved()
    spec = LaunchSpec(model_name="q", n_gpu=2)
    assert placement.place(spec, resolved, p) == [[0, 1]]
    assert resolved.engine_options["tensor_parallel_size"] == 2
    share = resolved.engine_options["gpu_memory_utilization"]
    assert 0.05 < share < 0.2  # 7B bf16 over two 80 GiB GPUs: ~8 GiB each, not vLLM's 90 %


def test_explicit_gpu_idx_and_cpu_keep_the_old_rules():
    p = packer((1, 80))
    assert placement.place(LaunchSpec(model_name="q", gpu_idx=[0]), _resolved(), p) == [[0]]
    cpu = _resolved(device="cpu")
    assert placement.place(LaunchSpec(model_name="q"), cpu, p) == [None]
