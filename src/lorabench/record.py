"""A run folder: ``config.yaml``, ``metrics.jsonl``, ``predictions.jsonl`` (or ``generations.jsonl``), ``adapter/``,
``result.json``.

``result.json`` is written last and atomically: a folder without it is an unfinished run.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError
from .files import atomic_write_json, atomic_write_text, write_jsonl
from .records import RunResult
from .trackers import Tracker


TRAINABLE = "trainable.safetensors"  # a sweep trial's trained parameters, for its held-out pass


class RunRecord:
    def __init__(self, run_dir: str | Path, config: dict[str, Any]) -> None:
        self.dir = Path(run_dir)
        if (self.dir / "result.json").exists():
            raise ConfigError(f"{self.dir}: already holds a finished run (result.json); choose another -o")
        self.dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.dir / ".adapter.tmp", ignore_errors=True)  # what a killed write left behind
        for stale in self.dir.glob(".*.tmp"):
            stale.unlink(missing_ok=True)
        (self.dir / "metrics.jsonl").unlink(missing_ok=True)
        atomic_write_text(self.dir / "config.yaml", yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
        self.trackers: list[Tracker] = []
        self._metrics = (self.dir / "metrics.jsonl").open("a", encoding="utf-8")

    def log(self, row: dict[str, Any]) -> None:
        self._metrics.write(json.dumps(row) + "\n")
        self._metrics.flush()
        for t in self.trackers:
            t.log(row["step"], {k: v for k, v in row.items() if k != "step"})

    def rows(self, name: str, rows: list[dict[str, Any]]) -> None:
        """Per-example outputs: ``predictions.jsonl`` (classification) or ``generations.jsonl`` (generative)."""
        write_jsonl(self.dir / name, rows)

    def adapter(self, save: Callable[[str], None]) -> None:
        """``save(folder)`` writes the adapter; it lands in ``adapter/`` whole or not at all."""
        tmp = self.dir / ".adapter.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        save(str(tmp))
        shutil.rmtree(self.dir / "adapter", ignore_errors=True)
        tmp.rename(self.dir / "adapter")

    def trainable(self, state: dict[str, Any]) -> None:
        """The trained parameters (``trainable.safetensors``), written atomically."""
        from safetensors.torch import save_file

        tmp = self.dir / f".{TRAINABLE}.tmp"
        save_file(state, str(tmp))
        tmp.replace(self.dir / TRAINABLE)

    def result(self, result: RunResult) -> None:
        self._metrics.close()
        for t in self.trackers:
            t.close()
        atomic_write_json(self.dir / "result.json", result)
