"""Pure parts of the supervisor: GPU placement and the bounded worker logs."""

from __future__ import annotations

from pathlib import Path

import pytest

from local_runtime.resolve import LaunchError
from local_runtime.spec import LaunchSpec
from local_runtime.supervisor.logs import BoundedLog
from local_runtime.supervisor.placement import assign, visible_devices


def spec(**fields: object) -> LaunchSpec:
    return LaunchSpec(model_name="m", **fields)  # type: ignore[arg-type]


def test_cpu_models_see_no_gpu() -> None:
    assert assign(spec(replica=2), "cpu", 4) == [None, None]
    assert assign(spec(n_gpu=None), "cuda", 4) == [None]
    assert visible_devices(None) == ""
    with pytest.raises(LaunchError, match="runs on cpu"):
        assign(spec(gpu_idx=[0]), "cpu", 0)


def test_gpu_placement() -> None:
    assert assign(spec(replica=3), "cuda", 2) == [[0], [1], [0]]  # auto: round robin
    assert assign(spec(n_gpu=2, replica=2), "cuda", 4) == [[0, 1], [2, 3]]
    assert assign(spec(gpu_idx=[2, 3], replica=2), "cuda", 4) == [[2], [3]]
    assert assign(spec(gpu_idx=[1], replica=2), "cuda", 4) == [[1], [1]]  # shared
    assert visible_devices([2, 3]) == "2,3"
    with pytest.raises(LaunchError, match="only 1 GPU"):
        assign(spec(n_gpu=2), "cuda", 1)
    with pytest.raises(LaunchError, match=r"gpu_idx \[5\] does not exist"):
        assign(spec(gpu_idx=[5]), "cuda", 2)
    with pytest.raises(LaunchError, match="none was found"):
        assign(spec(), "cuda", 0)


def test_log_rotates_and_tails_across_files(tmp_path: Path) -> None:
    log = BoundedLog(tmp_path / "m-0.log", max_bytes=100)
    for i in range(30):
        log.write(f"line {i:02d}\n".encode())  # 8 bytes each
    log.close()
    assert (tmp_path / "m-0.log").stat().st_size <= 100
    assert (tmp_path / "m-0.log.1").stat().st_size <= 100
    assert not (tmp_path / "m-0.log.2").exists()
    assert log.tail(3) == ["line 27", "line 28", "line 29"]
    assert log.tail(15)[0] == "line 15"  # reaches into the rotated file
    log.mark("stopped")  # reopens the file
    assert log.tail(1) == ["--- modelport: stopped"]
    log.close()
    assert BoundedLog(tmp_path / "none.log").tail() == []
