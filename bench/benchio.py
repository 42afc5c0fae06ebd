"""What every benchmark does last: print its result as JSON and, with --out, write it there
atomically (kinema.fileio), so an interrupted run never leaves half a report in docs/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def emit_json(result: dict[str, Any], out: Path | None) -> None:
    """Print `result` (indented JSON); with `out`, also write it there (parents created)."""
    from kinema.fileio import atomic_write_text

    text = json.dumps(result, indent=2)
    print(text)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, text + "\n")
