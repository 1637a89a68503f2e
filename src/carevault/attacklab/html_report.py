"""The self-contained HTML report (no CDN): filled in by the report work."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any


def render(data: dict[str, Any]) -> str:
    body = html.escape(json.dumps(data["summary"], indent=2))
    return (
        "<!doctype html><html lang='en'><title>CareVault attack lab</title>"
        f"<pre>{body}</pre></html>"
    )


def write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(data), encoding="utf-8")
