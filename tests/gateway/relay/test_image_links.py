"""Expiring image links (README: "b64_json or expiring links"): `response_format=url` through the
gateway, then the link fetched with a plain HTTP client (no API key) before and after it expires.

A real gateway launches the fake engine as an image model in a real worker process. The
gateway's link clock is injected (`app.state.services.image_links.clock`), so "after it expires" is a
time the test sets, not a wait; the sweep is the real background task, polled for.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.app import create_app
from gateway.settings import Settings
from local_runtime import image_links as links
from tests.conftest import ADMIN_TOKEN, Gateway
from tests.support.polling import ManualClock, wait_for
from tests.support.servers import ServerThread, free_port

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def image_gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    port = free_port()  # known before start, so public_url (where links point) is this server
    settings = Settings(
        home=tmp_path_factory.mktemp("home"),
        admin_token=ADMIN_TOKEN,
        port=port,
        image_link_ttl_s=1,
    )
    app = create_app(settings)
    gw = Gateway(ServerThread(app, port=port).start(), app)
    folder = tmp_path_factory.mktemp("pipeline")
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "Fake"}))
    body = {
        "model_name": "sd-turbo",
        "model_uid": "img",
        "model_type": "image",
        "model_engine": "fake",
        "model_path": str(folder),
    }
    resp = gw.admin.post("/v1/models", json=body, timeout=120)
    assert resp.status_code == 200, resp.text
    yield gw
    gw.stop()


def generate(gw: Gateway, n: int = 1) -> list[str]:
    client = gw.openai(gw.create_token(name="img"))
    out = client.images.generate(model="img", prompt="a cube", n=n, response_format="url")
    return [d.url or "" for d in out.data]


def file_of(gw: Gateway, url: str) -> Path:
    name = httpx.URL(url).path.rsplit("/", 1)[1]
    return Path(gw.app.state.services.settings.files_dir) / "images" / name


def test_image_link_is_served_until_it_expires_then_gone(image_gw: Gateway) -> None:
    clock = ManualClock()
    image_gw.app.state.services.image_links.clock = clock
    fetched, untouched = generate(image_gw, n=2)
    assert fetched.startswith(f"{image_gw.url}/files/images/")
    assert file_of(image_gw, untouched).is_file()

    ok = httpx.get(fetched)  # a plain client: the signed link is the credential
    assert ok.status_code == 200, ok.text
    assert ok.headers["content-type"] == "image/png"
    assert ok.content.startswith(PNG_MAGIC)
    assert ok.content == file_of(image_gw, fetched).read_bytes()

    clock.now = (links.expires_at(file_of(image_gw, fetched).name) or 0) + 1
    gone = httpx.get(fetched)
    assert gone.status_code == 410
    assert gone.json()["error"]["code"] == "link_expired"
    assert "image_link_ttl_s" in gone.json()["error"]["message"]
    assert not file_of(image_gw, fetched).exists()
    # the link nobody fetched is deleted by the sweep
    wait_for(lambda: not file_of(image_gw, untouched).exists(), "the sweep to delete it")
    assert httpx.get(untouched).status_code == 410


def test_image_link_signature_is_checked(image_gw: Gateway) -> None:
    clock = ManualClock()
    image_gw.app.state.services.image_links.clock = clock
    (url,) = generate(image_gw)
    path = httpx.URL(url).path
    name = path.rsplit("/", 1)[1]
    no_sig = httpx.get(f"{image_gw.url}{path}")
    assert no_sig.status_code == 403 and no_sig.json()["error"]["code"] == "bad_signature"
    forged = httpx.get(f"{image_gw.url}{path}?sig={'0' * 64}")
    assert forged.status_code == 403
    # a later expiry written into the name does not carry the signature over
    expiry, rest = name.split("-", 1)
    longer = f"{int(expiry) + 10**6}-{rest}"
    sig = httpx.URL(url).params["sig"]
    extended = httpx.get(f"{image_gw.url}/files/images/{longer}?sig={sig}")
    assert extended.status_code == 403
    unknown = httpx.get(f"{image_gw.url}/files/images/secret.key")
    assert unknown.status_code == 404
    assert httpx.get(url).status_code == 200
