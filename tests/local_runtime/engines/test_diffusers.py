"""DiffusersEngine on a tiny Stable Diffusion pipeline built at test time (random weights:
the pictures are noise, the pipeline path is real)."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import numpy as np
import pytest

from local_runtime.engines.base import EngineError
from local_runtime.engines.diffusers import DiffusersEngine
from local_runtime.spec import ResolvedSpec
from tests.support.tiny_models import build_tiny_sd

pytest.importorskip("diffusers", reason="the image extra (diffusers) is not installed")

FAST = {"size": "64x64", "num_inference_steps": 2}


def sd_spec(path: str, **options: object) -> ResolvedSpec:
    return ResolvedSpec(
        uid="tiny-sd",
        model_name="tiny-sd",
        model_type="image",
        engine="diffusers",
        model_format="diffusers",
        model_path=path,
        engine_options=dict(options),
    )


@pytest.fixture(scope="module")
def sd_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(build_tiny_sd(tmp_path_factory.mktemp("tiny-sd")))


@pytest.fixture(scope="module")
def engine(sd_path: str) -> DiffusersEngine:
    eng = DiffusersEngine(sd_spec(sd_path, max_size=256))
    eng.load()
    yield eng
    eng.unload()


def png_size(data: bytes) -> tuple[int, int]:
    from PIL import Image

    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(data)) as im:
        return im.size


def test_match_wants_a_pipeline_folder(tmp_path: Path, sd_path: str) -> None:
    ok, reason = DiffusersEngine.match(sd_spec(str(tmp_path)))
    assert not ok and "model_index.json" in reason
    assert DiffusersEngine.match(sd_spec(sd_path)) == (True, "")


async def test_n_images_of_the_requested_size(engine: DiffusersEngine) -> None:
    images = await engine.images({"prompt": "a red cube", "n": 2, **FAST})
    assert len(images) == 2
    assert all(png_size(img) == (64, 64) for img in images)
    wide = await engine.images({"prompt": "a red cube", "size": "96x64", "num_inference_steps": 1})
    assert png_size(wide[0]) == (96, 64)


async def test_default_size_comes_from_the_model(engine: DiffusersEngine) -> None:
    # the tiny UNet's sample_size 32 x VAE scale factor 2
    images = await engine.images({"prompt": "a cube", "num_inference_steps": 1})
    assert png_size(images[0]) == (64, 64)


async def test_same_seed_same_bytes(engine: DiffusersEngine) -> None:
    body = {"prompt": "a blue sphere", "seed": 1234, "negative_prompt": "blurry", **FAST}
    first, second = await engine.images(body), await engine.images(body)
    other = await engine.images({**body, "seed": 4321})
    assert first == second
    assert first != other


async def test_guidance_scale_reaches_the_pipeline(engine: DiffusersEngine) -> None:
    # random weights barely respond to the prompt, so check the value the pipeline used
    await engine.images({"prompt": "a blue sphere", "guidance_scale": 9.5, **FAST})
    assert engine._pipe is not None and engine._pipe.guidance_scale == 9.5


async def test_progress_is_reported_per_step(engine: DiffusersEngine) -> None:
    """status() read from inside the UNet (once per step) shows the running job's step."""
    assert engine._pipe is not None
    unet = engine._pipe.unet
    original = unet.forward
    seen: list[dict | None] = []

    def spy(*args, **kwargs):
        seen.append(engine.status()["job"])
        return original(*args, **kwargs)

    unet.forward = spy
    try:
        await engine.images({"prompt": "progress", "size": "64x64", "num_inference_steps": 3})
    finally:
        unet.forward = original
    assert [s["step"] for s in seen] == [0, 1, 2]
    assert all(s["steps"] == 3 and s["images"] == 1 for s in seen)
    assert engine.status() == {"queued": 0, "job": None}


async def test_concurrent_jobs_queue_and_all_finish(engine: DiffusersEngine) -> None:
    jobs = [engine.images({"prompt": f"job {i}", **FAST}) for i in range(3)]
    results = await asyncio.gather(*jobs)
    assert [len(r) for r in results] == [1, 1, 1]


@pytest.fixture(scope="module")
def batcher(sd_path: str) -> DiffusersEngine:
    eng = DiffusersEngine(sd_spec(sd_path, max_size=256, max_batch_images=4, max_wait_ms=500))
    eng.load()
    yield eng
    eng.unload()


def pixels(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"), dtype=np.int16)


async def test_waiting_requests_share_a_call_and_keep_their_own_seeds(
    batcher: DiffusersEngine,
) -> None:
    bodies = [
        {"prompt": "a red cube", "seed": 1, **FAST},
        {"prompt": "a blue ball", "seed": 2, "n": 2, **FAST},
        {"prompt": "a green cone", "seed": 3, **FAST},
    ]
    alone = [await batcher.images(b) for b in bodies]
    calls = batcher.calls
    together = await asyncio.gather(*(batcher.images(b) for b in bodies))
    assert batcher.calls == calls + 1  # four images, one pipeline call
    assert [len(r) for r in together] == [1, 2, 1]
    for solo, batched in zip(alone, together, strict=True):
        for a, b in zip(solo, batched, strict=True):
            # the same seeds give the same picture; a batch may round a pixel differently
            assert np.abs(pixels(a) - pixels(b)).max() <= 2
    assert not np.array_equal(pixels(together[1][0]), pixels(together[1][1]))  # seed + i


async def test_clients_coming_back_one_by_one_still_share_a_call(
    batcher: DiffusersEngine,
) -> None:
    """Closed-loop clients: answered together, back a few ms apart; the next call waits for all
    of them (within max_wait_ms) instead of starting with the first and leaving three behind."""

    async def client(i: int) -> None:
        for _ in range(3):
            await batcher.images({"prompt": f"client {i}", **FAST})
            await asyncio.sleep(0.01 * i)  # reading the answer takes each client its own time

    calls = batcher.calls
    await asyncio.gather(*(client(i) for i in range(4)))
    assert batcher.calls == calls + 3  # twelve images, three calls of four


async def test_a_lone_client_does_not_wait_for_others(sd_path: str) -> None:
    eng = DiffusersEngine(sd_spec(sd_path, max_size=256, max_batch_images=4, max_wait_ms=60_000))
    eng.load()
    try:
        for _ in range(3):  # each call's one image is all the last call made: no gathering
            await asyncio.wait_for(eng.images({"prompt": "alone", **FAST}), 60)
    finally:
        eng.unload()


async def test_requests_of_different_shapes_or_too_many_images_do_not_share(
    batcher: DiffusersEngine,
) -> None:
    calls = batcher.calls
    bodies = [
        {"prompt": "x", **FAST},
        {"prompt": "x", "size": "96x64", "num_inference_steps": 2},  # another size
        {"prompt": "x", "negative_prompt": "blur", **FAST},  # a negative prompt
        {"prompt": "x", "guidance_scale": 3.0, **FAST},  # another guidance scale
    ]
    await asyncio.gather(*(batcher.images(b) for b in bodies))
    assert batcher.calls == calls + 4
    calls = batcher.calls
    await asyncio.gather(
        batcher.images({"prompt": "x", "n": 3, **FAST}),
        batcher.images({"prompt": "y", "n": 2, **FAST}),  # 3 + 2 > max_batch_images 4
        batcher.images({"prompt": "z", **FAST}),  # fits beside the first
    )
    assert batcher.calls == calls + 2


async def test_a_request_whose_client_left_never_runs(batcher: DiffusersEngine) -> None:
    slow = asyncio.ensure_future(
        batcher.images({"prompt": "slow", "size": "128x128", "num_inference_steps": 8})
    )
    while batcher.status()["job"] is None:  # the slow call is running
        await asyncio.sleep(0.01)
    calls = batcher.calls
    left = asyncio.ensure_future(batcher.images({"prompt": "left", "size": "96x96"}))
    async with asyncio.timeout(60):  # a bound for a loaded machine, not a timing claim
        while batcher.status()["queued"] != 1:
            await asyncio.sleep(0.01)
    left.cancel()
    assert len(await slow) == 1
    assert batcher.calls == calls and batcher.status() == {"queued": 0, "job": None}


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": "x", "size": "65x64"}, "multiples of 8"),
        ({"prompt": "x", "size": "512x512"}, "largest side"),
        ({"prompt": "x", "size": "big"}, "WIDTHxHEIGHT"),
        ({"prompt": "x", "n": 0}, "n must be between"),
        ({"prompt": "x", "n": 11}, "n must be between"),
        ({"prompt": "x", "num_inference_steps": 1000}, "num_inference_steps"),
        ({"prompt": "x", "seed": "abc"}, "seed must be an integer"),
        ({"prompt": "x", "guidance_scale": "lots"}, "guidance_scale"),
    ],
)
async def test_bad_requests_are_400(engine: DiffusersEngine, body: dict, needle: str) -> None:
    with pytest.raises(EngineError, match=needle) as err:
        await engine.images(body)
    assert err.value.status == 400


# --- through the real worker process, with the official openai client ------------------------


@pytest.fixture(scope="module")
def image_worker(sd_path: str, tmp_path_factory: pytest.TempPathFactory):
    from tests.support.worker import WorkerProcess

    files = tmp_path_factory.mktemp("files")
    env = {
        "MODELPORT_FILES_DIR": str(files),
        "MODELPORT_PUBLIC_URL": "http://files.test",
        "MODELPORT_FILES_KEY": "k" * 64,
    }
    with WorkerProcess(sd_spec(sd_path, max_size=256).model_dump(), env=env) as worker:
        worker.files_dir = files
        yield worker


def test_worker_generates_b64_and_url_images(image_worker) -> None:
    import base64

    from openai import OpenAI

    client = OpenAI(base_url=f"{image_worker.base_url}/v1", api_key="unused", max_retries=0)
    extra = {"num_inference_steps": 2, "seed": 99}
    out = client.images.generate(
        model="tiny-sd", prompt="a cube", n=2, size="64x64", extra_body=extra
    )
    pngs = [base64.b64decode(d.b64_json) for d in out.data]
    assert [png_size(p) for p in pngs] == [(64, 64), (64, 64)]
    again = client.images.generate(
        model="tiny-sd", prompt="a cube", n=2, size="64x64", extra_body=extra
    )
    assert [base64.b64decode(d.b64_json) for d in again.data] == pngs  # same seed, same bytes
    linked = client.images.generate(
        model="tiny-sd", prompt="a cube", size="64x64", response_format="url", extra_body=extra
    )
    url = linked.data[0].url
    assert url.startswith("http://files.test/files/images/")
    saved = image_worker.files_dir / "images" / url.split("?")[0].rsplit("/", 1)[1]
    assert saved.read_bytes() == pngs[0]
    health = image_worker.health()
    assert health["queued"] == 0 and health["job"] is None


def test_worker_bad_size_is_400(image_worker) -> None:
    import openai
    from openai import OpenAI

    client = OpenAI(base_url=f"{image_worker.base_url}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError, match="multiples of 8"):
        client.images.generate(model="tiny-sd", prompt="x", size="63x64")
