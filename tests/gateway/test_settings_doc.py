"""config/modelport.yaml documents every setting (it ships in the wheel as the documented defaults)."""

from __future__ import annotations

import re

from gateway.settings import DEFAULT_CONFIG, Settings


def test_every_setting_is_documented_in_modelport_yaml():
    text = DEFAULT_CONFIG.read_text(encoding="utf-8")
    documented = set(re.findall(r"(?m)^#?\s?([a-z_][a-z0-9_]*):", text))
    missing = sorted(set(Settings.model_fields) - documented)
    assert not missing, f"add these to config/modelport.yaml: {missing}"
