"""`modelport import one-api`: a One API database (its gorm schema, tests/support/oneapi_db.py)
on SQLite, MariaDB and PostgreSQL becomes modelport channels, tokens and prices, and an imported
key is used with the official `openai` client.

One API facts relied on: model/token.go (key char(48) stored without `sk-`, remain_quota,
unlimited_quota, expired_time -1 = never, status 1..4), middleware/auth.go TokenAuth (clients send
`sk-<key>` or the bare key), model/user.go (a token's group is its user's), model/option.go
(ModelRatio/CompletionRatio/GroupRatio/QuotaPerUnit options), relay/billing/ratio/model.go
(ratio 1 = 0.002 USD / 1K tokens), relay/channeltype/define.go and url.go (types, base URLs).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator

import openai
import pytest
from typer.testing import CliRunner

from gateway.cli import app as cli
from gateway.migrate_oneapi import plan
from gateway.migrate_oneapi.source import OneApiData, sqlalchemy_url
from tests.conftest import ADMIN_TOKEN
from tests.support import oneapi_db

MSG = [{"role": "user", "content": "hi"}]
MARIADB = os.environ.get("MODELPORT_TEST_MARIADB", "mysql+pymysql://root@127.0.0.1:3306")


@pytest.fixture
def mariadb_url() -> Iterator[str]:
    import pymysql

    name = f"oneapi_{secrets.token_hex(4)}"
    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="")
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}`")
        yield f"{MARIADB}/{name}"
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        conn.close()


@pytest.fixture(params=["sqlite", "mariadb", "postgresql"])
def oneapi_url(request, tmp_path, fake_upstream) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'one-api.db'}"
    elif request.param == "mariadb":
        url = request.getfixturevalue("mariadb_url")
    else:
        url = request.getfixturevalue("pg_url")
    oneapi_db.create(url, fake_upstream.url)
    return url.replace("mysql+pymysql://", "mysql://").replace(
        "postgresql+psycopg://", "postgres://"
    )


def run_import(gateway, db: str, *extra: str) -> dict:
    args = ["import", "one-api", "--db", db, "--url", gateway.url, "--admin-token", ADMIN_TOKEN]
    result = CliRunner().invoke(cli, [*args, *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_import_and_use_the_keys(gateway, oneapi_url, monkeypatch):
    monkeypatch.setattr(plan, "BATCH_ROWS", 4)  # 11 rows: three requests
    out = run_import(gateway, oneapi_url)
    assert (out["channels"], out["tokens"], out["prices"]) == (5, 4, 2)
    notes = "\n".join(out["notes"])
    assert "channel 4 'ernie' not imported: One API type 15" in notes
    assert "One API type 2 (API2D) becomes type 8 Custom" in notes
    assert "ability (default, qwen-old) of channel 2" in notes
    assert "group ratio vip=0.8" in notes
    assert "'bob' is disabled" in notes
    assert ALICE not in json.dumps(out)  # keys never printed

    channels = {c["name"]: c for c in gateway.api("GET", "/api/channel/", params={"page_size": 50})}
    assert channels["azure"]["type"] == 3 and channels["azure"]["other"] == "2024-02-15-preview"
    # One API strips dots from Azure deployment names (relay/adaptor/openai/adaptor.go)
    assert json.loads(channels["azure"]["model_mapping"]) == {"gpt-4.1": "gpt-41"}
    assert (
        channels["api2d"]["type"] == 8
        and channels["api2d"]["base_url"] == "https://oa.api2d.net/v1"
    )
    assert channels["api2d"]["status"] == 2
    assert channels["qwen cloud"]["base_url"] == "https://dashscope.aliyuncs.com/compatible-mode/v1"
    assert channels["qwen cloud"]["status"] == 3 and channels["qwen cloud"]["weight"] == 5
    assert channels["openai"]["used_quota"] == 123456 and channels["openai"]["balance"] == 12.5
    assert channels["openai"]["group"] == "default,vip"

    tokens = {t["name"]: t for t in gateway.api("GET", "/api/token/", params={"page_size": 50})}
    alice = tokens["alice-app"]
    assert (alice["remain_quota"], alice["used_quota"], alice["unlimited_quota"]) == (
        250_000,
        750_000,
        False,
    )
    assert alice["group"] == "vip" and alice["models"] == "qwen2.5-7b-instruct"
    assert tokens["root"]["unlimited_quota"] and tokens["root"]["expired_time"] > 0
    assert tokens["bob"]["status"] == 2 and tokens["old"]["status"] == 3

    qwen = gateway.api("GET", "/api/price/qwen2.5-7b-instruct")
    assert (qwen["input"], qwen["output"]) == (1.0, 2.0)  # ratio 0.5 x 2 USD/1M, completion x2
    assert gateway.api("GET", "/api/price/gpt-4o")["input"] == 2.5

    # the key One API issued works in both spellings, within its model limit, and spends quota
    for key in ("sk-" + ALICE, ALICE):
        reply = gateway.openai(key).chat.completions.create(
            model="qwen2.5-7b-instruct", messages=MSG
        )
        assert reply.choices[0].message.content
    with pytest.raises(openai.PermissionDeniedError):
        gateway.openai("sk-" + ALICE).chat.completions.create(model="gpt-4o", messages=MSG)
    gateway.flush_usage()
    spent = gateway.api("GET", f"/api/token/{alice['id']}")
    assert 0 < 250_000 - spent["remain_quota"] == spent["used_quota"] - 750_000
    for dead in ("sk-" + oneapi_db.BOB_KEY, "sk-" + oneapi_db.OLD_KEY):
        with pytest.raises(openai.AuthenticationError):
            gateway.openai(dead).chat.completions.create(model="qwen2.5-7b-instruct", messages=MSG)

    again = run_import(gateway, oneapi_url)
    assert (again["channels"], again["tokens"]) == (0, 0)
    assert sum("imported before" in n for n in again["notes"]) == 5


ALICE = oneapi_db.ALICE_KEY


def test_dry_run_changes_nothing(gateway, tmp_path, fake_upstream):
    db = tmp_path / "one-api.db"
    oneapi_db.create(f"sqlite:///{db}", fake_upstream.url)
    out = run_import(gateway, f"sqlite:///{db}", "--dry-run")
    assert "self-hosted qwen (type 50)" in out["channels"] and "alice-app" in out["tokens"]
    assert ALICE not in json.dumps(out)
    assert [c["name"] for c in gateway.api("GET", "/api/channel/")] == ["local"]


def test_one_api_sql_dsn_spellings():
    """One API's SQL_DSN for MySQL is a Go DSN (README: `root:123456@tcp(localhost:3306)/oneapi`)."""
    assert sqlalchemy_url("root:pw@tcp(db:3306)/oneapi?charset=utf8mb4&parseTime=True") == (
        "mysql+pymysql://root:pw@db:3306/oneapi"
    )
    assert (
        sqlalchemy_url("postgres://u:p@h:5432/oneapi") == "postgresql+psycopg://u:p@h:5432/oneapi"
    )
    assert sqlalchemy_url("sqlite:///one-api.db") == "sqlite:///one-api.db"


def test_a_database_that_is_not_one_api(gateway, tmp_path):
    db = tmp_path / "other.db"
    import sqlite3

    sqlite3.connect(db).execute("CREATE TABLE t (x int)").connection.commit()
    args = ["import", "one-api", "--db", f"sqlite:///{db}", "--url", gateway.url]
    result = CliRunner().invoke(cli, [*args, "--admin-token", ADMIN_TOKEN])
    assert result.exit_code == 1 and "is this One API's database?" in result.output


def test_plan_rescales_a_custom_quota_per_unit():
    """QuotaPerUnit (model/option.go) is how many quota units make 1 USD in that One API: at
    1,000,000 a token's 1,000,000 remaining is 1 USD, modelport's 500,000; ratio 1 is then
    1 USD per 1M tokens (quota = tokens x ratio)."""
    data = OneApiData(
        channels=[],
        tokens=[
            {
                "id": 1,
                "user_id": 0,
                "key": "k" * 48,
                "name": "t",
                "remain_quota": 1_000_000,
                "used_quota": 10,
                "expired_time": -1,
                "unlimited_quota": 0,
                "status": 1,
            }
        ],
        options={"QuotaPerUnit": "1000000", "ModelRatio": '{"m": 1}'},
    )
    made = plan.make_plan(data)
    assert made.tokens[0]["remain_quota"] == 500_000 and made.tokens[0]["key"] == "sk-" + "k" * 48
    assert made.prices == [{"model": "m", "input": 1.0, "completion_ratio": None}]
    assert any("QuotaPerUnit is 1000000" in n for n in made.notes)


def test_import_endpoint_refuses_what_is_not_a_plan(gateway):
    """Admin-only, and still checked: rows must be objects, keys long enough to be One API's."""
    for body in ([], {"tokens": "x"}, {"channels": [1]}):
        answer = gateway.admin.post("/api/import/one-api", json=body).json()
        assert answer["success"] is False and "modelport import one-api" in answer["message"]
    out = gateway.api(
        "POST", "/api/import/one-api", json={"tokens": [{"one_api_id": 1, "key": "sk-abc"}]}
    )
    assert out["tokens"] == 0 and "too short" in out["notes"][0]
    odd = {"one_api_id": 2, "key": "sk-" + "q" * 48, "name": "odd", "status": 9, "used_quota": "x"}
    assert gateway.api("POST", "/api/import/one-api", json={"tokens": [odd]})["tokens"] == 1
    token = gateway.api("GET", "/api/token/", params={"keyword": "odd"})[0]
    assert (token["status"], token["used_quota"]) == (1, 0)
    assert (
        gateway.admin.post(
            "/api/import/one-api", json={}, headers={"Authorization": ""}
        ).status_code
        == 401
    )
