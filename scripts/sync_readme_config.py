"""Rewrite the README's generated config table from the config field metadata."""

from __future__ import annotations

import re
from pathlib import Path

from offload_gym.config import config_table_markdown

README = Path(__file__).resolve().parents[1] / "README.md"


def main() -> None:
    text = README.read_text(encoding="utf-8")
    table = config_table_markdown()
    pattern = re.compile(r"\| key \| default \| unit \| allowed \| meaning \|\n(?:\|.*\|\n)+")
    if not pattern.search(text):
        raise SystemExit("README.md: no config table found to replace")
    README.write_text(pattern.sub(table + "\n", text, count=1), encoding="utf-8")


if __name__ == "__main__":
    main()
