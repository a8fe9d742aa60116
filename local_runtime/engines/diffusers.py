"""Text-to-image with a diffusers pipeline folder (Stable Diffusion 1.x/2.x/XL, SD3, Flux...).

Why these choices:
- One pipeline call at a time, several requests per call: a diffusers pipeline is not safe to call
  from two threads, and one call already uses every core or the whole GPU -- but on a GPU a batch
  of images costs little more than one. Requests queue in arrival order; when the pipeline is free
  the oldest request is joined by the waiting ones it can share a call with (same size, steps,
  guidance scale, and negative prompt or none), up to `max_batch_images` images in all, each
  image with its own prompt and seed. Clients in a closed loop come back one by one after a
  batch is answered, so when fewer images wait than the last call made, the runner waits up to
  `max_wait_ms` (default 100, nothing next to a call of a second or more) for the rest; a lone
  client, whose last call was its own, never waits. PNG encoding runs outside the pipeline's
  thread, each request's in its own, so the next call starts at once. The queue depth and the
  running call's step ("step 3/20") show in status(), fed by the pipeline's
  `callback_on_step_end`, so the UI can draw a progress bar for a job that takes a minute. A
  request whose client left while it waited never runs.
- `seed` seeds one CPU torch.Generator per image (image i of a request: seed + i): the same seed
  gives the same bytes on the same machine whether the request ran alone or in a batch, and the
  same noise on CPU and GPU.
- Weights load in float16 on CUDA, float32 on CPU (float16 kernels are slow or missing on CPU).
- The worker turns the PNG bytes into b64_json or a URL; this engine only makes pictures.

Engine options: `max_size` (largest side in pixels, default 2048), `max_n` (images per request,
default 10, OpenAI's limit), `default_steps`, `max_steps` (default 150), `torch_dtype`,
`max_batch_images` (images per pipeline call, default 8 on CUDA, 1 on CPU where a batch takes
as long as its images one by one), `max_wait_ms` (how long a smaller batch than the last waits for
the rest, default 100).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import io
import secrets
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from local_runtime.engines.base import IMAGES, Engine, EngineError
from local_runtime.spec import ResolvedSpec

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline
    from PIL.Image import Image


def _int(body: dict[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise EngineError(f"{key} must be an integer", code="invalid_value")
    if not lo <= int(value) <= hi:
        raise EngineError(f"{key} must be between {lo} and {hi}; got {value}", code="invalid_value")
    return int(value)


@dataclass(eq=False)
class _Job:
    """One request's validated pipeline arguments and the future its caller awaits."""

    kwargs: dict[str, Any]
    future: asyncio.Future[list[Image]]

    @property
    def images(self) -> int:
        return int(self.kwargs["num_images_per_prompt"])

    @property
    def shape(self) -> tuple[Any, ...]:
        """Requests of one shape can share a pipeline call."""
        k = self.kwargs
        return (
            k["width"],
            k["height"],
            k["num_inference_steps"],
            k.get("guidance_scale"),
            "negative_prompt" in k,
        )


class DiffusersEngine(Engine):
    name = "diffusers"
    model_types = frozenset({"image"})
    capabilities = frozenset({IMAGES})
    requires = "diffusers"

    def __init__(self, spec: ResolvedSpec) -> None:
        super().__init__(spec)
        self._pipe: DiffusionPipeline | None = None
        self._accepts: frozenset[str] = frozenset()
        self._queue: deque[_Job] = deque()
        self._runner: asyncio.Task[None] | None = None
        self._max_images = 1
        self._max_wait_s = 0.1
        self._last_images = 0  # images the last pipeline call made
        self._arrived: asyncio.Event | None = None  # set when a request queues (the runner's)
        self._progress_lock = threading.Lock()
        self._job: dict[str, int] | None = None
        self._default_size = 512
        self.calls = 0  # pipeline calls made (a batch is one)

    @classmethod
    def extra(cls) -> str:
        return "image"

    @classmethod
    def match(cls, spec: ResolvedSpec) -> tuple[bool, str]:
        ok, reason = super().match(spec)
        if not ok:
            return ok, reason
        path = Path(spec.model_path)
        if not (path / "model_index.json").is_file():
            what = "a single file" if path.is_file() else "a folder without model_index.json"
            return False, (
                "diffusers needs a pipeline folder with model_index.json (save_pretrained layout); "
                f"{path} is {what}"
            )
        return True, ""

    # --- lifecycle -------------------------------------------------------------------------
    def load(self) -> None:
        import torch
        from diffusers import DiffusionPipeline

        cuda = self.spec.device.startswith(("cuda", "gpu"))
        dtype_name = self.spec.engine_options.get("torch_dtype")
        dtype = getattr(torch, dtype_name) if dtype_name else (torch.float16 if cuda else None)
        kwargs: dict[str, Any] = {"local_files_only": True}
        if dtype is not None:
            kwargs["torch_dtype"] = dtype
        if self.spec.trust_remote_code:
            kwargs["trust_remote_code"] = True
        pipe = DiffusionPipeline.from_pretrained(self.spec.model_path, **kwargs)
        if cuda:
            index = (self.spec.gpu_idx or [0])[0]
            pipe = pipe.to(f"cuda:{index}")
        pipe.set_progress_bar_config(disable=True)
        self._accepts = frozenset(inspect.signature(pipe.__call__).parameters)
        unet = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
        sample = getattr(getattr(unet, "config", None), "sample_size", None)
        scale = getattr(pipe, "vae_scale_factor", 8)
        if isinstance(sample, int):
            self._default_size = sample * scale
        self._max_images = int(self.spec.engine_options.get("max_batch_images", 8 if cuda else 1))
        self._max_wait_s = float(self.spec.engine_options.get("max_wait_ms", 100)) / 1000
        self._pipe = pipe

    def unload(self) -> None:
        self._pipe = None

    def status(self) -> dict[str, Any]:
        with self._progress_lock:
            job = dict(self._job) if self._job else None
        return {"queued": len(self._queue), "job": job}

    # --- operation -------------------------------------------------------------------------
    def _size(self, body: dict[str, Any]) -> tuple[int, int]:
        size = body.get("size")
        if size in (None, "", "auto"):
            return self._default_size, self._default_size
        max_side = int(self.spec.engine_options.get("max_size", 2048))
        try:
            w, h = (int(x) for x in str(size).lower().split("x"))
        except ValueError:
            raise EngineError(
                f"size must look like 512x512 (WIDTHxHEIGHT); got {size!r}", code="invalid_value"
            ) from None
        if w % 8 or h % 8 or w <= 0 or h <= 0:
            raise EngineError(f"size {size}: width and height must be multiples of 8")
        if max(w, h) > max_side:
            raise EngineError(f"size {size}: the largest side this model serves is {max_side}")
        return w, h

    def _call_kwargs(self, body: dict[str, Any]) -> dict[str, Any]:
        """Validate a request into pipeline arguments before it queues."""
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise EngineError("prompt must be a non-empty string", code="invalid_value")
        opts = self.spec.engine_options
        width, height = self._size(body)
        kwargs: dict[str, Any] = {
            "prompt": prompt,
            "num_images_per_prompt": _int(body, "n", 1, 1, int(opts.get("max_n", 10))),
            "width": width,
            "height": height,
            "num_inference_steps": _int(
                body,
                "num_inference_steps",
                int(opts.get("default_steps", 30)),
                1,
                int(opts.get("max_steps", 150)),
            ),
        }
        if body.get("negative_prompt"):
            if "negative_prompt" not in self._accepts:
                raise EngineError(f"model {self.spec.uid!r} does not take a negative_prompt")
            kwargs["negative_prompt"] = str(body["negative_prompt"])
        if body.get("guidance_scale") is not None:
            try:
                kwargs["guidance_scale"] = float(body["guidance_scale"])
            except (TypeError, ValueError):
                raise EngineError("guidance_scale must be a number", code="invalid_value") from None
        seed = body.get("seed")
        if seed is not None:
            kwargs["seed"] = _int(body, "seed", 0, 0, 2**63 - 1)
        return kwargs

    async def images(self, body: dict[str, Any]) -> list[bytes]:
        if self._pipe is None:
            raise EngineError("model is not loaded", status=503, code="model_not_loaded")
        job = _Job(self._call_kwargs(body), asyncio.get_running_loop().create_future())
        self._queue.append(job)
        if self._arrived is not None:
            self._arrived.set()
        if self._runner is None or self._runner.done():
            self._runner = asyncio.get_running_loop().create_task(self._drain())
        try:
            images = await job.future
        finally:
            if job in self._queue:  # the caller left before its turn: it never runs
                self._queue.remove(job)
        return await asyncio.to_thread(_pngs, images)

    def _next_batch(self) -> list[_Job]:
        """The oldest waiting request and the later ones that fit its call, in arrival order."""
        first = self._queue.popleft()
        batch, room = [first], self._max_images - first.images
        for job in list(self._queue):
            if 0 < job.images <= room and job.shape == first.shape:
                self._queue.remove(job)
                batch.append(job)
                room -= job.images
        return batch

    async def _drain(self) -> None:
        """Run pipeline calls while requests wait; a new runner starts with the next request."""
        self._arrived = asyncio.Event()  # bound to this runner's loop
        while self._queue:
            await self._gather(self._arrived)
            batch = [job for job in self._next_batch() if not job.future.done()]
            pipe = self._pipe
            if not batch:
                continue
            if pipe is None:
                failure = EngineError("model is not loaded", status=503, code="model_not_loaded")
                for job in batch:
                    job.future.set_exception(failure)
                continue
            self._last_images = sum(job.images for job in batch)
            try:
                images = await asyncio.to_thread(self._generate, pipe, [j.kwargs for j in batch])
            except Exception as exc:  # every request of the call gets the pipeline's error
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            for job in batch:
                mine, images = images[: job.images], images[job.images :]
                if not job.future.done():
                    job.future.set_result(mine)

    async def _gather(self, arrived: asyncio.Event) -> None:
        """Wait, at most `max_wait_ms`, while fewer images wait than the last call made."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._max_wait_s
        want = min(self._last_images, self._max_images)
        while sum(job.images for job in self._queue) < want and loop.time() < deadline:
            arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(arrived.wait(), deadline - loop.time())

    def _generate(self, pipe: Any, jobs: list[dict[str, Any]]) -> list[Image]:
        """One pipeline call for these requests' images, in request order."""
        import torch

        first = jobs[0]
        prompts: list[str] = []
        negatives: list[str] = []
        generators: list[torch.Generator] = []
        for kwargs in jobs:
            seed = kwargs.get("seed")
            for i in range(kwargs["num_images_per_prompt"]):
                prompts.append(kwargs["prompt"])
                if "negative_prompt" in kwargs:
                    negatives.append(kwargs["negative_prompt"])
                image_seed = secrets.randbits(63) if seed is None else (seed + i) % 2**63
                generators.append(torch.Generator(device="cpu").manual_seed(image_seed))
        call: dict[str, Any] = {
            "prompt": prompts,
            "num_images_per_prompt": 1,
            "width": first["width"],
            "height": first["height"],
            "num_inference_steps": first["num_inference_steps"],
            "generator": generators,
        }
        if negatives:
            call["negative_prompt"] = negatives
        if "guidance_scale" in first:
            call["guidance_scale"] = first["guidance_scale"]
        steps = call["num_inference_steps"]
        with self._progress_lock:
            self._job = {"step": 0, "steps": steps, "images": len(prompts), "requests": len(jobs)}
            self.calls += 1

        def on_step_end(_pipe: Any, step: int, _t: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            with self._progress_lock:
                if self._job is not None:
                    self._job["step"] = step + 1
            return tensors

        if "callback_on_step_end" in self._accepts:
            call["callback_on_step_end"] = on_step_end
        try:
            with torch.inference_mode():
                result = pipe(**call, output_type="pil")
        finally:
            with self._progress_lock:
                self._job = None
        out: list[Image] = list(result.images)
        if len(out) != len(prompts):
            raise EngineError(
                f"the pipeline returned {len(out)} images for {len(prompts)} prompts",
                status=500,
                code="generation_failed",
            )
        return out


def _pngs(images: list[Image]) -> list[bytes]:
    out = []
    for image in images:
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        out.append(buf.getvalue())
    return out
