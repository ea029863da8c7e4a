"""The shipped alert rules and scrape config, checked by Prometheus's own ``promtool``
(the Debian package ``prometheus``): the rules and the config are valid, and the unit
tests of the rules (``deploy/observability/alerts.test.yml``: each alert firing, and not
firing, on series) pass. Broken copies show that each check can fail. Seconds, offline.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import yaml

from tests.support.prometheus import ALERTS, ALERTS_TEST, OBSERVABILITY, alert_rules, promtool

DOCS = Path(__file__).resolve().parents[2] / "docs" / "observability.md"


def test_promtool_checks_the_rules_and_the_scrape_config() -> None:
    rules = promtool("check", "rules", str(ALERTS))
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in rules.stdout
    config = promtool("check", "config", str(OBSERVABILITY / "prometheus.yml"))
    assert config.returncode == 0, config.stdout + config.stderr


def test_promtool_unit_tests_of_the_alerts_pass() -> None:
    result = promtool("test", "rules", ALERTS_TEST.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_unit_tested_and_has_a_runbook_entry() -> None:
    tested = {
        case["alertname"]
        for test in yaml.safe_load(ALERTS_TEST.read_text())["tests"]
        for case in test["alert_rule_test"]
        if case.get("exp_alerts")
    }
    names = [name for name, _ in alert_rules()]
    assert set(names) <= tested, (
        f"alerts never seen firing in alerts.test.yml: {set(names) - tested}"
    )
    headings = {
        m.group(1).lower() for m in re.finditer(r"^### (\w+)$", DOCS.read_text(), re.MULTILINE)
    }
    doc = yaml.safe_load(ALERTS.read_text())
    for rule in (r for g in doc["groups"] for r in g["rules"]):
        anchor = rule["alert"].lower()
        assert anchor in headings, f"{rule['alert']}: no runbook entry in docs/observability.md"
        assert rule["annotations"]["runbook_url"] == f"docs/observability.md#{anchor}"


def test_broken_rules_and_a_wrong_expectation_fail(tmp_path: Path) -> None:
    broken = tmp_path / "alerts.yml"
    broken.write_text(ALERTS.read_text().replace("> 30", "> > 30", 1))
    result = promtool("check", "rules", str(broken))
    assert result.returncode != 0 and "parse error" in (result.stdout + result.stderr)
    # The same tests against rules whose queue threshold moved: the firing case fails.
    shutil.copy(ALERTS_TEST, tmp_path / ALERTS_TEST.name)
    broken.write_text(
        ALERTS.read_text().replace("queue_age_seconds) > 30", "queue_age_seconds) > 300")
    )
    result = promtool("test", "rules", ALERTS_TEST.name, cwd=tmp_path)
    assert result.returncode != 0, result.stdout
    assert "BroadcasterQueueAgeHigh" in result.stdout + result.stderr
