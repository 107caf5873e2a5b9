"""What the command lines (``train.py``, ``python -m agents.imitation``) parse alike."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["UsageError", "load_mapping"]


class UsageError(Exception):
    """A bad command-line value: reported as one line, exit code 2."""


def load_mapping(text: str | None, flag: str) -> dict[str, Any]:
    """``text`` as a mapping: a JSON/YAML file path, or inline JSON (YAML flow syntax accepted too)."""
    if text is None or not text.strip():
        return {}
    import yaml

    path = Path(text)
    source = f"file {text!r}"
    try:
        is_file = path.is_file()
    except OSError:
        is_file = False
    if is_file:
        try:
            raw = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise UsageError(f"{flag}: {text!r} is not a text file; give inline JSON or a JSON/YAML file") from None
    elif path.suffix.lower() in (".json", ".yaml", ".yml"):
        raise UsageError(f"{flag}: file {text!r} does not exist")
    elif text.lstrip().startswith(("{", "[")) or ":" in text:
        raw, source = text, "inline value"
    else:
        raise UsageError(f"{flag}: {text!r} is neither an existing JSON/YAML file nor inline JSON such as '{{\"a\": 1}}'")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UsageError(f"{flag}: cannot parse {source} as JSON or YAML ({first})") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UsageError(f"{flag}: expected a mapping of overrides, got {type(value).__name__} from {source}")
    return value
