"""The Helm chart, checked without helm: what its templates refer to must exist.

There is no helm binary in CI, so these tests read the templates as text and catch the
mistakes a render would: a `.Values` path that values.yaml does not define (a typo renders
as nothing, silently), an `include` of an undefined template, unbalanced blocks, an
environment variable no settings class reads, a CLI option the `scanfleet` command does
not have, a config example scanfleet would refuse, and task queues no worker consumes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from coordinator.budgets import BUDGET_CLASSES, FleetConfig
from coordinator.cli import app
from coordinator.settings import ScanSettings
from coordinator.transport import POOLS
from ingest.settings import BrokerSettings, IngestSettings
from storage.settings import StorageSettings

CHART = Path(__file__).resolve().parents[2] / "charts" / "scanfleet"
TEMPLATES = sorted((CHART / "templates").iterdir())

COMMENT = re.compile(r"\{\{-?\s*/\*.*?\*/\s*-?\}\}", re.S)
ACTION = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}", re.S)
VALUES_REF = re.compile(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")
INCLUDE = re.compile(r"\b(?:include|template)\s+\"([^\"]+)\"")
DEFINE = re.compile(r"\bdefine\s+\"([^\"]+)\"")
BASE_PATH_INCLUDE = re.compile(r"\$?\.Template\.BasePath\s+\"/([^\"]+)\"")
ENV_NAME = re.compile(r"-\s+name:\s+(SCANFLEET_[A-Z0-9_]+)")
OPENERS = {"if", "with", "range", "define", "block"}


def _values(name: str = "values.yaml") -> dict[str, Any]:
    data = yaml.safe_load((CHART / name).read_text())
    assert isinstance(data, dict)
    return data


def _actions(text: str) -> list[str]:
    """The contents of every template action, comments removed."""
    return ACTION.findall(COMMENT.sub("", text))


def missing_values_paths(text: str, values: dict[str, Any]) -> list[str]:
    """`.Values.a.b` paths used in the template text that `values` does not define."""
    missing = []
    for action in _actions(text):
        for match in VALUES_REF.finditer(action):
            node: Any = values
            for key in match.group(1).lstrip(".").split("."):
                if not isinstance(node, dict) or key not in node:
                    missing.append(f".Values{match.group(1)}")
                    break
                node = node[key]
    return missing


def unbalanced_blocks(text: str) -> str | None:
    """Why the if/with/range/define blocks of the text do not close, or None."""
    depth = 0
    for action in _actions(text):
        word = action.split(maxsplit=1)[0] if action.split() else ""
        if word in OPENERS:
            depth += 1
        elif word == "end":
            depth -= 1
            if depth < 0:
                return "an {{ end }} without a block"
    return f"{depth} block(s) never closed" if depth else None


def _workers(values: dict[str, Any]) -> list[dict[str, Any]]:
    workers = values.get("workers", _values()["workers"])
    assert isinstance(workers, list)
    return workers


def _uncovered_queues(values: dict[str, Any]) -> set[str]:
    """What NOTES.txt warns about: pool x class queues no running worker group consumes."""
    default_replicas = _values()["worker"]["replicas"]
    covered = set()
    for group in _workers(values):
        if group.get("replicas", default_replicas) > 0:
            for pool in group.get("pools") or POOLS:
                for budget_class in group.get("budgetClasses") or BUDGET_CLASSES:
                    covered.add(f"scanfleet.tasks.{pool}.{budget_class}")
    every = {f"scanfleet.tasks.{p}.{c}" for p in POOLS for c in BUDGET_CLASSES}
    return every - covered


def _helm_numbers(data: Any) -> Any:
    """What Helm hands toToml: values go through JSON, so every number is a float."""
    if isinstance(data, dict):
        return {key: _helm_numbers(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_helm_numbers(value) for value in data]
    if isinstance(data, int) and not isinstance(data, bool):
        return float(data)
    return data


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_every_values_path_a_template_uses_is_defined_in_values_yaml(template: Path) -> None:
    assert missing_values_paths(template.read_text(), _values()) == []


def test_the_values_path_check_catches_a_typo() -> None:
    values = {"worker": {"graceS": 30}, "scope": []}
    text = "{{ .Values.worker.graceS }} {{ $.Values.worker.gracS }} {{ .Values.scope }}"
    assert missing_values_paths(text, values) == [".Values.worker.gracS"]
    assert missing_values_paths("{{ .Values.scope.allow }}", values) == [".Values.scope.allow"]
    assert missing_values_paths("{{/* .Values.nothing */}}", values) == []


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_template_blocks_are_balanced(template: Path) -> None:
    assert unbalanced_blocks(template.read_text()) is None


def test_the_block_check_catches_a_missing_end() -> None:
    assert unbalanced_blocks("{{- if .Values.a }}{{ range .b }}{{ end }}") is not None
    assert unbalanced_blocks("{{ end }}") is not None
    assert unbalanced_blocks("{{ if .a }}{{ else if .b }}{{ end }}{{`{{ raw }}`}}") is None


def test_every_included_template_is_defined_and_every_included_file_exists() -> None:
    defined: set[str] = set()
    included: set[str] = set()
    for template in TEMPLATES:
        for action in _actions(template.read_text()):
            defined.update(DEFINE.findall(action))
            included.update(INCLUDE.findall(action))
            for name in BASE_PATH_INCLUDE.findall(action):
                assert (CHART / "templates" / name).is_file(), f"{template.name}: {name}"
    assert included - defined == set()


def test_ci_values_override_only_what_values_yaml_defines() -> None:
    """A misspelt key in an override file is silently ignored by helm."""

    def check(override: Any, default: Any, path: str) -> None:
        if not isinstance(override, dict) or not isinstance(default, dict) or not default:
            return  # a scalar, a list or a free-form map ({} in values.yaml)
        for key, value in override.items():
            assert key in default, f"{path}.{key} is not in values.yaml"
            check(value, default[key], f"{path}.{key}")

    check(_values("ci/test-values.yaml"), _values(), "")


def test_every_scanfleet_variable_the_chart_sets_is_read_by_a_settings_class() -> None:
    known = {
        f"{cls.model_config['env_prefix']}{field.upper()}"
        for cls in (ScanSettings, StorageSettings, BrokerSettings, IngestSettings)
        for field in cls.model_fields
    }
    used = {name for template in TEMPLATES for name in ENV_NAME.findall(template.read_text())}
    assert "SCANFLEET_WORKER_GRACE_S" in used
    assert used - known == set()


@pytest.mark.parametrize(
    ("command", "options"),
    [
        (["worker"], ["--pool", "--budget-class", "--threads"]),
        (["coordinator"], []),
        (["ingest"], []),
        (["db", "upgrade"], []),
    ],
)
def test_the_commands_and_options_the_chart_runs_exist(
    command: list[str], options: list[str]
) -> None:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for option in options:
        assert option in result.output


def test_the_chart_knows_the_pools_and_budget_classes_of_the_code() -> None:
    pools = "(list " + " ".join(f'"{p}"' for p in POOLS) + ")"
    classes = "(list " + " ".join(f'"{c}"' for c in BUDGET_CLASSES) + ")"
    for name in ("_helpers.tpl", "NOTES.txt"):
        text = (CHART / "templates" / name).read_text()
        assert pools in text and classes in text, name


@pytest.mark.parametrize("values_file", ["values.yaml", "ci/test-values.yaml"])
def test_the_worker_groups_consume_every_task_queue(values_file: str) -> None:
    values = _values(values_file)
    for group in _workers(values):
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", group["name"])
        assert set(group.get("pools") or ()) <= set(POOLS)
        assert set(group.get("budgetClasses") or ()) <= set(BUDGET_CLASSES)
    assert _uncovered_queues(values) == set()


def test_the_uncovered_queue_check_sees_a_missing_class() -> None:
    values = {"workers": [{"name": "fast", "budgetClasses": ["standard"]}]}
    assert _uncovered_queues(values) == {f"scanfleet.tasks.{p}.slow" for p in POOLS}


def _documented_config_example() -> Any:
    """The `config:` example commented out in values.yaml, uncommented."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    start = lines.index("# config:")
    block = []
    for line in lines[start:]:
        if not line.startswith("#") or line.strip() == "#":
            break
        block.append(line[2:])
    return yaml.safe_load("\n".join(block))["config"]


@pytest.mark.parametrize(
    "config",
    [_values("ci/test-values.yaml")["config"], _documented_config_example()],
    ids=["ci-values", "values-yaml-example"],
)
def test_config_structures_are_valid_scanfleet_config_after_helms_number_conversion(
    config: Any,
) -> None:
    loaded = FleetConfig.model_validate(_helm_numbers(config))
    nightly = loaded.profile("nightly")
    assert isinstance(nightly.max_concurrency, int) and nightly.max_concurrency == 8
    assert loaded.scope.budgets


def test_the_default_worker_grace_leaves_the_kubelet_a_margin() -> None:
    worker = _values()["worker"]
    assert worker["terminationGraceMarginS"] >= 30
    assert worker["terminationGracePeriodSeconds"] == ""  # computed: graceS + margin
    assert worker["graceS"] == ScanSettings.model_fields["worker_grace_s"].default
