"""llama.cpp answers 429 beyond `max_queue` (README, Local models: "requests beyond the slots
queue, and beyond `max_queue` get 429"), on SmolLM2-135M in a real worker process.

One slot and a queue of one: a streamed request that cannot stop early (`ignore_eos`, many
tokens) holds it, the test waits until the engine reports it in flight, and the next request must
be refused at once in OpenAI's error shape; once the client hangs up, requests are served again.
"""

from __future__ import annotations

import threading

import httpx
import openai
import pytest

from tests.local_runtime.engines.test_llama_cpp import CAPITAL, smol_spec
from tests.support.polling import wait_for
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.slow


def _hold_a_stream(base_url: str, started: threading.Event, release: threading.Event) -> None:
    body = {"messages": [CAPITAL], "max_tokens": 1500, "ignore_eos": True, "stream": True}
    with httpx.stream("POST", f"{base_url}/v1/chat/completions", json=body, timeout=300) as r:
        for line in r.iter_lines():
            if line.startswith("data:"):
                started.set()
            if release.is_set():
                break  # hang up: the engine frees the slot


def test_llama_cpp_answers_429_beyond_max_queue() -> None:
    with WorkerProcess(smol_spec("queued", n_parallel=1, max_queue=1)) as worker:
        started, release = threading.Event(), threading.Event()
        holder = threading.Thread(
            target=_hold_a_stream, args=(worker.base_url, started, release), daemon=True
        )
        holder.start()
        try:
            assert started.wait(120), "the first request never started streaming"
            wait_for(lambda: worker.health()["requests_in_flight"] == 1, "the held request")
            client = openai.OpenAI(
                base_url=f"{worker.base_url}/v1", api_key="unused", max_retries=0
            )
            with pytest.raises(openai.RateLimitError) as refused:
                client.chat.completions.create(model="queued", messages=[CAPITAL], max_tokens=2)
            error = refused.value.response.json()["error"]
            assert set(error) == {"message", "type", "param", "code"}
            assert "limit 1" in error["message"]
        finally:
            release.set()
            holder.join(300)
        wait_for(lambda: worker.health()["requests_in_flight"] == 0, "the slot to come back")
        served = client.chat.completions.create(model="queued", messages=[CAPITAL], max_tokens=2)
        assert served.usage.completion_tokens == 2
