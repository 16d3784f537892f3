"""The monitoring files in deploy/: Prometheus alert rules and a Grafana dashboard.

Every PromQL expression in them names only metrics the service's `/metrics` serves (a
scrape after traffic that makes every series exist), so a renamed metric fails here, not
silently in an operator's Grafana. promtool (Debian's `prometheus` package) checks the
rules, runs their unit tests (deploy/prometheus/alerts.test.yml) and parses the
dashboard's expressions; under CI=true a missing promtool fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import flask_migrate
import pytest
import yaml
from apiflask import APIFlask
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select, update

from backoffice import create_app, housekeeping, work
from backoffice.database import utcnow
from backoffice.extensions import db
from backoffice.jobs import service as jobs_service
from backoffice.jobs.models import Job
from backoffice.users import service as users
from backoffice.users.models import Role
from bench.fake_llm import serving
from tests.support import PASSWORD, settings

ROOT = Path(__file__).resolve().parents[1]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
ALERT_TESTS = ROOT / "deploy" / "prometheus" / "alerts.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "backoffice.json"
DOCS = ROOT / "docs" / "operations" / "monitoring.md"
TOKEN = "monitoring-token-0123456789abcdef0123456789abcdef"
DATASOURCE = "${DS_PROMETHEUS}"
#: Series Prometheus makes itself for every scrape target, not the service.
PROMETHEUS_OWN = frozenset({"up"})

# --- metric names in PromQL -------------------------------------------------------------

#: PromQL words that are neither metrics nor followed by "(" like a function.
KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "inf", "nan", "by", "without", "on", "ignoring"}
)
STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
MATCHERS = re.compile(r"\{[^{}]*\}")
RANGE = re.compile(r"\[[^\]]*\]")
LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
IDENTIFIER = re.compile(r"(?<![\w:.$])([A-Za-z_:][\w:]*)(\s*\()?")


def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads: identifiers left once strings, label
    matchers, ranges and label lists are removed, minus functions (a name before "(")
    and keywords."""
    text = STRING.sub('""', expr)
    text = MATCHERS.sub("", text)
    text = RANGE.sub("", text)
    text = LABEL_LIST.sub("", text)
    return {
        name for name, call in IDENTIFIER.findall(text) if not call and name.lower() not in KEYWORDS
    }


def test_metric_names_leave_out_functions_labels_and_strings() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (route, le) (rate(backoffice_x_bucket{job=~"$job",'
        ' route!~".+/health"}[$__rate_interval]))) / on (job) group_left (le) '
        'sum(label_replace(backoffice_y, "class", "${1}xx", "status", "(.)..")) > bool 1e3'
        " and up offset 5m"
    )
    assert metric_names(expr) == {"backoffice_x_bucket", "backoffice_y", "up"}


# --- what /metrics serves ---------------------------------------------------------------


def sample_names(text: str) -> set[str]:
    return {
        sample.name for family in text_string_to_metric_families(text) for sample in family.samples
    }


@pytest.fixture(scope="module")
def monitored_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[APIFlask]:
    folder = tmp_path_factory.mktemp("monitored-app")
    with serving() as model_server:
        app = create_app(
            settings(
                DATABASE_URL=f"sqlite:///{folder / 'app.db'}",
                CELERY_BROKER_URL=f"sqla+sqlite:///{folder / 'broker.db'}",  # no worker listens
                METRICS_TOKEN=TOKEN,
                LOGIN_RATE_LIMIT="2 per day",
                LLM_BASE_URL=model_server.url,
                LLM_MODEL="fake-model",
            )
        )
        app.config["RATELIMIT_KEY_PREFIX"] = uuid.uuid4().hex  # counts of this module's own
        with app.app_context():
            flask_migrate.upgrade()
        yield app
        app.extensions["chat_gateway"].close()
    with app.app_context():
        db.engine.dispose()


@pytest.fixture(scope="module")
def exported(monitored_app: APIFlask) -> set[str]:
    """Every sample name /metrics served over scrapes after traffic of every kind: requests
    (and a readiness probe), a login, failed logins and their 429, a chat call, a job run as
    the worker runs it, and retention that is overdue, then pruned."""
    app = monitored_app
    client = app.test_client()
    scrape_headers = {"Authorization": f"Bearer {TOKEN}"}
    with app.app_context():
        user = users.create_user("Mo", "mo-monitoring@example.com", PASSWORD, Role.MEMBER)
        user_id = user.id
    assert client.get("/health").status_code == 200
    assert client.get("/api/health").status_code == 200
    login = client.post(
        "/api/auth/token", json={"email": "mo-monitoring@example.com", "password": PASSWORD}
    )
    assert login.status_code == 200, login.json
    bearer = {"Authorization": f"Bearer {login.json['access_token']}"}
    wrong = {"email": "mo-monitoring@example.com", "password": "not the password"}
    assert [client.post("/api/auth/token", json=wrong).status_code for _ in range(3)] == [
        401,
        401,
        429,
    ]
    chat = client.post("/api/chat", json={"message": "count the red widgets"}, headers=bearer)
    assert chat.status_code == 200, chat.json
    assert client.get(f"/api/items/{uuid.uuid4()}", headers=bearer).status_code == 404

    with app.app_context():
        job = jobs_service.create_job(user_id, "text-analysis", {"text": "one two three"})
        assert work.process("jobs", job.id) is False  # what the Celery task runs
        status = db.session.scalar(select(Job.status).where(Job.id == job.id))
        assert status == "succeeded"
        finished = utcnow() - timedelta(days=app.config["JOB_RETENTION_DAYS"], hours=2)
        db.session.execute(update(Job).where(Job.id == job.id).values(finished_at=finished))
        db.session.commit()

    names: set[str] = set()
    overdue = client.get("/metrics", headers=scrape_headers)
    assert overdue.status_code == 200
    names |= sample_names(overdue.get_data(as_text=True))
    assert "backoffice_retention_overdue_seconds" in names
    with app.app_context():
        deleted = housekeeping.prune()
    assert deleted is not None
    assert deleted["jobs"] == 1
    pruned = client.get("/metrics", headers=scrape_headers)
    assert pruned.status_code == 200
    return names | sample_names(pruned.get_data(as_text=True))


def assert_exported(exprs: dict[str, str], exported: set[str]) -> None:
    """Each expression (by where it is) reads only exported metrics."""
    unknown = {
        where: sorted(metric_names(expr) - exported - PROMETHEUS_OWN)
        for where, expr in exprs.items()
    }
    assert {where: names for where, names in unknown.items() if names} == {}
    assert all(metric_names(expr) for expr in exprs.values())


# --- the alert rules -------------------------------------------------------------------


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_every_alert_reads_exported_metrics(exported: set[str]) -> None:
    rules = alert_rules()
    assert_exported({rule["alert"]: rule["expr"] for rule in rules}, exported)


def test_the_alerts_asked_for_are_there_and_say_what_they_mean() -> None:
    rules = alert_rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names))
    for wanted in (
        "BackofficeNotReady",
        "BackofficeHigh5xxRate",
        "BackofficeQueueWaiting",
        "BackofficeRetentionOverdue",
        "BackofficeLoginFailures",
    ):
        assert wanted in names
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["annotations"]["description"], rule["alert"]


def test_every_alert_has_a_unit_test_that_fires_it() -> None:
    document = yaml.safe_load(ALERT_TESTS.read_text())
    assert document["rule_files"] == [ALERTS.name]
    fired = {
        case["alertname"]
        for test in document["tests"]
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }
    assert fired == {rule["alert"] for rule in alert_rules()}


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        message = "promtool is not installed: apt-get install prometheus"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def run_promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 (promtool, with our files)
        [promtool(), *args], capture_output=True, text=True, cwd=cwd, check=False
    )


def test_promtool_checks_the_rules() -> None:
    checked = run_promtool("check", "rules", str(ALERTS), cwd=ROOT)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in checked.stdout


def test_promtool_runs_the_rules_unit_tests() -> None:
    tested = run_promtool("test", "rules", ALERT_TESTS.name, cwd=ALERT_TESTS.parent)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


# --- the dashboard ---------------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def query_panels() -> list[dict[str, Any]]:
    """Every panel but rows (which only group the panels below them)."""
    return [panel for panel in dashboard()["panels"] if panel["type"] != "row"]


def panel_exprs() -> dict[str, str]:
    return {
        f"{panel['title']} {target['refId']}": target["expr"]
        for panel in query_panels()
        for target in panel["targets"]
    }


def test_the_dashboard_is_a_grafana_model_on_a_chosen_prometheus() -> None:
    model = dashboard()
    assert isinstance(model["schemaVersion"], int)
    assert model["schemaVersion"] >= 36
    assert model["uid"] == "backoffice"
    assert model["title"]
    variables = {variable["name"]: variable for variable in model["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    ids = [panel["id"] for panel in model["panels"]]
    assert len(ids) == len(set(ids))


def test_the_panels_are_laid_out_without_overlap() -> None:
    taken: set[tuple[int, int]] = set()
    for panel in dashboard()["panels"]:
        grid = panel["gridPos"]
        assert {"h", "w", "x", "y"} <= grid.keys(), panel["title"]
        assert grid["h"] > 0
        assert grid["w"] > 0
        assert grid["x"] >= 0
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


def test_every_panel_is_titled_described_and_queries_the_chosen_prometheus() -> None:
    panels = query_panels()
    assert panels
    for panel in panels:
        assert panel["title"]
        assert panel["description"], panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": DATASOURCE}
        assert panel["targets"], panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target["datasource"]["uid"] == DATASOURCE


def test_every_panel_and_variable_reads_exported_metrics(exported: set[str]) -> None:
    exprs = panel_exprs()
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            found = re.fullmatch(r"label_values\((\w+),\s*\w+\)", variable["definition"])
            assert found is not None, variable["definition"]
            exprs[f"${variable['name']}"] = found[1]
    assert_exported(exprs, exported)


def test_promtool_parses_every_panel_expression(tmp_path: Path) -> None:
    """Written as alert rules (Grafana's variables given values), so promtool's parser,
    Prometheus' own, reads each one."""
    grafana_variables = {"$__rate_interval": "5m", "$job": "backoffice"}
    rules = []
    for number, expr in enumerate(panel_exprs().values()):
        for variable, value in grafana_variables.items():
            expr = expr.replace(variable, value)
        rules.append({"alert": f"Panel{number}", "expr": expr})
    assert not [rule for rule in rules if "$" in rule["expr"].replace("${1}", "")]
    rules_file = tmp_path / "panels.yml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    checked = run_promtool("check", "rules", str(rules_file), cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_docs_describe_every_panel_and_alert() -> None:
    text = DOCS.read_text()
    missing = [panel["title"] for panel in query_panels() if f"**{panel['title']}**" not in text]
    missing += [rule["alert"] for rule in alert_rules() if f"`{rule['alert']}`" not in text]
    assert missing == []
