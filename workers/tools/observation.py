"""The raw output of a built-in check: a pydantic model written as JSON by ``collect()``
and read back by the check's parser."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ValidationError

from workers.tools.base import ToolError

Observation = TypeVar("Observation", bound=BaseModel)


def read_observation(model: type[Observation], raw: bytes, tool: str) -> Observation:
    """``raw`` validated as ``model``; a :class:`ToolError` naming the first problem if not."""
    if not raw.strip():
        raise ToolError(f"{tool} output is empty")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "document"
        raise ToolError(f"{tool} output is not valid: {where}: {error['msg']}") from exc
