"""The token cache's lifetime (gateway/auth/tokens.py, 30 s): a change written behind the
gateway's back (another tool on the same database, no change event) is seen once the cached
copy is older than that, never later. The cache clock is injected, so the test moves time."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import openai
import pytest

from tests.conftest import Gateway
from tests.support.polling import ManualClock

MSG = [{"role": "user", "content": "hi"}]


def test_a_token_disabled_behind_the_gateways_back_is_refused_after_the_cache_ttl(
    make_gateway, fake_upstream, tmp_path: Path
) -> None:
    gw: Gateway = make_gateway(home=tmp_path)
    auth = gw.app.state.services.auth
    clock = auth.clock = ManualClock()
    gw.add_channel(name="up", base_url=fake_upstream.url, models="m")
    client = gw.openai(gw.create_token(name="cached"))
    client.chat.completions.create(model="m", messages=MSG)  # now cached
    with sqlite3.connect(tmp_path / "modelport.db") as db:
        db.execute("UPDATE token SET status = 2 WHERE name = 'cached'")
    clock.advance(29)
    client.chat.completions.create(model="m", messages=MSG)  # the cached copy, as designed
    clock.advance(1.5)
    with pytest.raises(openai.APIStatusError) as refused:
        client.chat.completions.create(model="m", messages=MSG)
    assert refused.value.status_code in (401, 403)
