"""One API rows -> what modelport creates, and a note for everything that does not carry over.

Facts from songquanpeng/one-api (commit 8df4a26): model/channel.go, model/token.go,
model/ability.go, model/user.go, model/option.go (field names); relay/channeltype/define.go and
url.go (type numbers, default base URLs); relay/channeltype/helper.go and
relay/adaptor/openai/adaptor.go (which types speak OpenAI's paths); relay/billing/ratio/model.go
(ratio 1 = 0.002 USD per 1K tokens at the default QuotaPerUnit 500000).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.billing.prices import QUOTA_PER_USD
from gateway.migrate_oneapi.source import OneApiData
from gateway.upstreams.registry import CHANNEL_TYPES

# One API's default base URL of the types modelport serves under the same number: a channel
# stored with it (or empty) takes modelport's default, which says the same in modelport's form
# (DashScope's compatible mode, Qianfan's /v2, 127.0.0.1 for localhost).
ONE_API_DEFAULT_BASE = {
    1: "https://api.openai.com",
    14: "https://api.anthropic.com",
    17: "https://dashscope.aliyuncs.com",
    20: "https://openrouter.ai/api",
    24: "https://generativelanguage.googleapis.com",
    25: "https://api.moonshot.cn",
    28: "https://api.mistral.ai",
    29: "https://api.groq.com/openai",
    30: "http://localhost:11434",
    31: "https://api.lingyiwanwu.com",
    32: "https://api.stepfun.com",
    36: "https://api.deepseek.com",
    39: "https://api.together.xyz",
    44: "https://api.siliconflow.cn",
    45: "https://api.x.ai",
    47: "https://qianfan.baidubce.com",
    49: "https://dashscope.aliyuncs.com",
}

# Resellers that One API relays on OpenAI's own paths (base + /v1/...): modelport's type 8.
AS_CUSTOM = {
    2: ("API2D", "https://oa.api2d.net"),
    4: ("CloseAI", "https://api.closeai-proxy.xyz"),
    5: ("OpenAI-SB", "https://api.openai-sb.com"),
    6: ("OpenAIMax", "https://api.openaimax.com"),
    7: ("OhMyGPT", "https://api.ohmygpt.com"),
    9: ("AILS", "https://api.caipacity.com"),
    10: ("AIProxy", "https://api.aiproxy.io"),
    12: ("API2GPT", "https://api.api2gpt.com"),
    13: ("AIGC2D", "https://api.aigc2d.com"),
    19: ("360", "https://ai.360.cn"),
    22: ("FastGPT", "https://fastgpt.run/api/openapi"),
    26: ("Baichuan", "https://api.baichuan-ai.com"),
}
CUSTOM_TYPE = 8
AZURE = 3

# Types with their own wire format or URL scheme in One API and no adaptor here.
NOT_SERVED = {
    11: "PaLM",
    15: "Baidu (ERNIE v1)",
    16: "Zhipu",
    18: "Xunfei",
    21: "AIProxy Library",
    23: "Tencent",
    27: "Minimax",
    33: "AWS Claude",
    34: "Coze",
    35: "Cohere",
    37: "Cloudflare",
    38: "DeepL",
    40: "Doubao",
    41: "Novita",
    42: "Vertex AI",
    43: "Proxy",
    46: "Replicate",
    48: "Xunfei V2",
    51: "Gemini (OpenAI-compatible)",
}

DEFAULT_QUOTA_PER_UNIT = 500_000.0
NAME_MAX = 30  # TokenCreate.name
BATCH_ROWS = 500  # rows per import request: about 250 KB


@dataclass(slots=True)
class Plan:
    channels: list[dict[str, Any]] = field(default_factory=list)
    tokens: list[dict[str, Any]] = field(default_factory=list)
    prices: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def batches(self, size: int | None = None) -> list[dict[str, Any]]:
        """Request bodies of at most `size` rows each: a large One API (tens of thousands of
        tokens) stays under the server's body limit (max_body_bytes, 8 MiB by default)."""
        size = size or BATCH_ROWS
        rows = [("channels", r) for r in self.channels]
        rows += [("tokens", r) for r in self.tokens]
        rows += [("prices", r) for r in self.prices]
        out = []
        for i in range(0, len(rows), size):
            body: dict[str, list[dict[str, Any]]] = {"channels": [], "tokens": [], "prices": []}
            for kind, row in rows[i : i + size]:
                body[kind].append(row)
            out.append(body)
        return out

    def summary(self) -> dict[str, Any]:
        """What would be imported; never a key."""
        return {
            "channels": [f"{c['name']} (type {c['type']})" for c in self.channels],
            "tokens": [t["name"] for t in self.tokens],
            "prices": len(self.prices),
            "notes": self.notes,
        }


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _json_object(raw: Any, what: str, notes: list[str]) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        notes.append(f"{what} is not JSON and was dropped: {_text(raw)[:80]!r}")
        return {}
    if not isinstance(value, dict):
        notes.append(f"{what} is not a JSON object and was dropped")
        return {}
    return value


def _channel_type(row: dict[str, Any], base_url: str, notes: list[str]) -> tuple[int, str] | None:
    """modelport's type and base URL for a One API channel, or None (noted) when none fits."""
    type_, label = int(row.get("type") or 0), f"channel {row['id']} {row.get('name')!r}"
    if type_ in AS_CUSTOM:
        name, default = AS_CUSTOM[type_]
        notes.append(f"{label}: One API type {type_} ({name}) becomes type 8 Custom")
        return CUSTOM_TYPE, base_url or default
    if type_ in NOT_SERVED or type_ not in CHANNEL_TYPES or type_ in (0, 1047):
        name = NOT_SERVED.get(type_, "unknown")
        notes.append(
            f"{label} not imported: One API type {type_} ({name}) has its own API, which "
            "modelport has no adaptor for; add it by hand if an OpenAI-compatible URL exists"
        )
        return None
    if base_url.rstrip("/") == ONE_API_DEFAULT_BASE.get(type_):
        base_url = ""
    return type_, base_url


def _azure_deployments(label: str, models: str, mapping: dict[str, Any], notes: list[str]) -> None:
    """One API calls an Azure deployment by the model name without dots (gpt-3.5-turbo ->
    gpt-35-turbo, relay/adaptor/openai/adaptor.go GetRequestURL); modelport sends the mapped
    name, so the mapping says it."""
    for model in (m.strip() for m in models.split(",")):
        target = mapping.get(model, model)
        if "." in target:
            mapping[model] = target.replace(".", "")
            notes.append(f"{label}: Azure deployment of {model} is {mapping[model]}, as in One API")


def _channel(row: dict[str, Any], notes: list[str]) -> dict[str, Any] | None:
    label = f"channel {row['id']} {row.get('name')!r}"
    mapped = _channel_type(row, _text(row.get("base_url")).strip(), notes)
    if mapped is None:
        return None
    type_, base_url = mapped
    mapping = _json_object(row.get("model_mapping"), f"{label}: model_mapping", notes)
    bad = [k for k, v in mapping.items() if not isinstance(v, str)]
    for k in bad:
        mapping.pop(k)
    if bad:
        notes.append(f"{label}: model_mapping entries {bad} are not names and were dropped")
    if type_ == AZURE:
        _azure_deployments(label, _text(row.get("models")), mapping, notes)
    config = _json_object(row.get("config"), f"{label}: config", notes)
    config["one_api_id"] = row["id"]
    other = _text(row.get("other"))
    if type_ == 17 and other:
        notes.append(f"{label}: the Ali plugin {other!r} (other) has no place in compatible mode")
    weight = int(row.get("weight") or 0)
    return {
        "one_api_id": row["id"],
        "type": type_,
        "name": _text(row.get("name")).strip() or f"one-api-{row['id']}",
        "key": _text(row.get("key")),
        "base_url": base_url,
        "models": _text(row.get("models")),
        "model_mapping": mapping,
        "group": _text(row.get("group")) or "default",
        "priority": int(row.get("priority") or 0),
        # One API ignores weights (random within a priority); 0 would make a fallback here
        "weight": weight if weight > 0 else 1,
        "status": int(row.get("status") or 1),
        "config": config,
        "other": other,
        "system_prompt": _text(row.get("system_prompt")),
        "used_quota": int(row.get("used_quota") or 0),
        "balance": float(row.get("balance") or 0),
        "created_time": int(row.get("created_time") or 0),
        "test_time": int(row.get("test_time") or 0),
        "response_time": int(row.get("response_time") or 0),
    }


def _check_abilities(
    data: OneApiData, imported: dict[int, dict[str, Any]], notes: list[str]
) -> None:
    """modelport derives abilities from each channel's groups x models; say where One API's
    stored abilities differ (edited by hand, or left behind by an old version)."""
    for ab in data.abilities:
        ch = imported.get(int(ab.get("channel_id") or 0))
        if ch is None:
            continue
        groups = {g.strip() for g in ch["group"].split(",")}
        models = {m.strip() for m in ch["models"].split(",")}
        if ab.get("group") not in groups or ab.get("model") not in models:
            notes.append(
                f"ability ({ab.get('group')}, {ab.get('model')}) of channel {ch['one_api_id']} "
                "is not in its groups x models: modelport serves what the channel lists"
            )
        elif int(ab.get("priority") or 0) != ch["priority"]:
            notes.append(
                f"ability ({ab.get('group')}, {ab.get('model')}) of channel {ch['one_api_id']} "
                f"has priority {ab.get('priority')}, the channel {ch['priority']}: the channel's wins"
            )


def _tokens(data: OneApiData, scale: float, notes: list[str]) -> list[dict[str, Any]]:
    users = {int(u["id"]): u for u in data.users}
    capped_users: dict[int, int] = {}
    out = []
    for row in data.tokens:
        key = _text(row.get("key")).strip()
        label = f"token {row['id']} {row.get('name')!r}"
        if not key:
            notes.append(f"{label} not imported: it has no key")
            continue
        user = users.get(int(row.get("user_id") or 0), {})
        status = int(row.get("status") or 1)
        if user and int(user.get("status") or 1) != 1 and status == 1:
            status = 2
            notes.append(f"{label}: its user {user.get('username')!r} is disabled, so is the token")
        name = _text(row.get("name"))
        if len(name) > NAME_MAX:
            notes.append(f"{label}: the name is cut to {NAME_MAX} characters")
            name = name[:NAME_MAX]
        if user:
            capped_users[int(user["id"])] = int(user.get("quota") or 0)
        out.append(
            {
                "one_api_id": row["id"],
                "key": key if key.startswith("sk-") else "sk-" + key,
                "name": name,
                "status": status,
                "group": _text(user.get("group")) or "default",
                "created_time": int(row.get("created_time") or 0),
                "accessed_time": int(row.get("accessed_time") or 0),
                "expired_time": -1 if row.get("expired_time") is None else int(row["expired_time"]),
                "remain_quota": round(int(row.get("remain_quota") or 0) * scale),
                "unlimited_quota": bool(row.get("unlimited_quota")),
                "used_quota": round(int(row.get("used_quota") or 0) * scale),
                "models": _text(row.get("models")),
                "subnet": _text(row.get("subnet")),
            }
        )
    for uid, quota in sorted(capped_users.items()):
        notes.append(
            f"user {users[uid].get('username')!r} (quota {round(quota * scale)}): One API also "
            "caps its tokens by the user's quota; modelport has no users, each token keeps "
            "only its own quota"
        )
    return out


def _prices(data: OneApiData, notes: list[str]) -> list[dict[str, Any]]:
    per_unit = float(data.options.get("QuotaPerUnit") or DEFAULT_QUOTA_PER_UNIT)
    ratios = _json_object(data.options.get("ModelRatio"), "option ModelRatio", notes)
    completion = _json_object(data.options.get("CompletionRatio"), "option CompletionRatio", notes)
    if not ratios:
        notes.append(
            "no ModelRatio option is stored (One API used its built-in ratios): modelport's "
            "default prices apply"
        )
    groups = _json_object(data.options.get("GroupRatio"), "option GroupRatio", notes)
    for group, ratio in groups.items():
        if ratio != 1:
            notes.append(f"group ratio {group}={ratio} is not imported: modelport has none")
    out = []
    for model, ratio in ratios.items():
        if isinstance(ratio, bool) or not isinstance(ratio, int | float) or ratio < 0:
            notes.append(f"ModelRatio[{model!r}] = {ratio!r} is not a ratio and was skipped")
            continue
        cr = completion.get(model)
        out.append(
            {
                "model": model,
                # quota = tokens x ratio and per_unit quota = 1 USD, so USD per 1M tokens:
                "input": ratio * 1_000_000 / per_unit,
                "completion_ratio": cr if isinstance(cr, int | float) and cr >= 0 else None,
            }
        )
    return out


def make_plan(data: OneApiData) -> Plan:
    plan = Plan()
    per_unit = float(data.options.get("QuotaPerUnit") or DEFAULT_QUOTA_PER_UNIT)
    if per_unit != DEFAULT_QUOTA_PER_UNIT:
        plan.notes.append(
            f"QuotaPerUnit is {per_unit:.0f}: quotas are rescaled to modelport's {QUOTA_PER_USD} = 1 USD"
        )
    imported: dict[int, dict[str, Any]] = {}
    for row in data.channels:
        ch = _channel(row, plan.notes)
        if ch is not None:
            plan.channels.append(ch)
            imported[int(row["id"])] = ch
    _check_abilities(data, imported, plan.notes)
    plan.tokens = _tokens(data, QUOTA_PER_USD / per_unit, plan.notes)
    plan.prices = _prices(data, plan.notes)
    return plan
