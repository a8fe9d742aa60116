"""Skips are failures unless allowed: `scripts/test.sh` (and so CI) installs every gate the suite
has, so a test that skips there hides a feature. With MODELPORT_STRICT_SKIPS=1 the run fails when a
test skips and its node id does not start with an entry of ALLOWED (each with its reason)."""

from __future__ import annotations

import os
from typing import Any

import pytest

# node-id prefix -> why skipping it is acceptable on a machine that ran scripts/test.sh
ALLOWED: dict[str, str] = {}


class SkipGuard:
    def __init__(self) -> None:
        self.unlisted: list[tuple[str, str]] = []

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.skipped and not any(report.nodeid.startswith(p) for p in ALLOWED):
            reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else ""
            self.unlisted.append((report.nodeid, str(reason)))

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if not self.unlisted:
            return
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        lines = [f"  {nodeid}: {reason}" for nodeid, reason in self.unlisted]
        msg = "\n".join(
            [f"{len(self.unlisted)} test(s) skipped that tests/skips.py does not allow:", *lines]
        )
        if reporter is not None:
            reporter.write_line(msg, red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def register(config: pytest.Config) -> None:
    if os.environ.get("MODELPORT_STRICT_SKIPS") == "1":
        config.pluginmanager.register(SkipGuard(), "modelport-skip-guard")
