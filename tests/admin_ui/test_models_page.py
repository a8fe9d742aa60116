"""The Models page's actions against a real runtime (no model loaded): each refusal of the
runtime or the catalog reaches the user as a flash message, through gateway.runtime_host's
ui_actions (admin_ui imports no local_runtime module)."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from pathlib import Path

from tests.admin_ui.helpers import UIClient
from tests.conftest import Gateway


def _flashes(page: str) -> list[str]:
    return [
        html.unescape(m)
        for m in re.findall(r'<div class="flash \w+" role="status">(.*?)</div>', page)
    ]


def test_models_page_actions_flash_the_runtimes_refusals(
    make_gateway: Callable[..., Gateway], tmp_path: Path
) -> None:
    gw = make_gateway(runtime_enabled=True)
    ui = UIClient(gw.url)
    ui.setup()
    ui.get("/ui/models", params={"q": "nothing-matches-this"})

    for _ in range(2):  # the first is accepted (it fails later, on the page): the UID is taken
        r = ui.post("/ui/models/launch", {"model_name": "no-such-family", "model_uid": "x"})
        assert r.status_code == 303
    r = ui.post("/ui/models/launch", {"model_name": "", "replica": "many"})
    assert r.status_code == 303
    r = ui.post("/ui/models/instances/ghost/terminate")
    assert r.status_code == 303
    r = ui.post("/ui/models/register", {"name": "mine", "path": str(tmp_path / "missing")})
    assert r.status_code == 303
    shown = _flashes(ui.get("/ui/models", params={"q": "nothing-matches-this"}).text)
    assert len(shown) == 5, shown
    assert shown[1].startswith("cannot launch: ") and "'x'" in shown[1], shown
    assert shown[2].startswith("cannot launch: replica: "), shown
    assert shown[3] == "ghost is not running", shown
    assert "does not exist" in shown[4], shown

    r = ui.get("/ui/models/instances/ghost/logs")
    assert r.status_code == 200
