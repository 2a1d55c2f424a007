"""The catalogue of message types, their JSON Schemas and their examples.

``python -m contracts.registry`` rewrites ``contracts/schemas/*.json`` from the
models; a test fails when the committed files drift from them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from contracts.events import FindingEvent
from contracts.scan import ScanEvent, ScanRequest
from contracts.task import TaskEvent, TaskMessage

PACKAGE_DIR = Path(__file__).resolve().parent
SCHEMA_DIR = PACKAGE_DIR / "schemas"
EXAMPLE_DIR = PACKAGE_DIR / "examples"

#: file stem -> model; the stem names both the schema and the example file.
MESSAGES: dict[str, type[BaseModel]] = {
    "finding-event": FindingEvent,
    "scan-request": ScanRequest,
    "scan-event": ScanEvent,
    "task": TaskMessage,
    "task-event": TaskEvent,
}


def json_schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def render_schema(model: type[BaseModel]) -> str:
    return json.dumps(json_schema(model), indent=2, sort_keys=True) + "\n"


def export(directory: Path = SCHEMA_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for stem, model in MESSAGES.items():
        path = directory / f"{stem}.json"
        path.write_text(render_schema(model), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for written_path in export(Path(sys.argv[1]) if len(sys.argv) > 1 else SCHEMA_DIR):
        print(written_path)
