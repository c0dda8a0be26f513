"""The spec directory as the plugin sees it: every spec file, valid or not, and errors that name no
filesystem path (shared by the JSON API, the Batches page and batch authorization)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from batchq.airflow import settings
from batchq.errors import BatchqError, SpecError
from batchq.spec import BatchSpec


class QueueStateError(BatchqError):
    """A batch's queues could not be read; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class SpecEntry:
    """One file of the spec directory: its spec, or why it did not load (path-free message)."""

    file: str
    spec: BatchSpec | None = None
    error: str | None = None

    @property
    def name(self) -> str:
        return self.spec.name if self.spec else Path(self.file).stem


def _without_paths(message: str, directory: Path) -> str:
    return message.replace(f"{directory}/", "").replace(str(directory), "<spec_dir>")


def load_specs() -> list[SpecEntry]:
    """Every ``*.yaml``/``*.yml`` in the spec directory, sorted by file name, invalid ones with their error."""
    directory = settings.spec_dir()
    entries = []
    for path in sorted(directory.glob("*.y*ml")):
        try:
            entries.append(SpecEntry(path.name, spec=BatchSpec.from_yaml(path)))
        except SpecError as exc:
            entries.append(SpecEntry(path.name, error=_without_paths(str(exc), directory)))
        except OSError as exc:
            entries.append(SpecEntry(path.name, error=f"unreadable: {exc.strerror}"))
    return entries


def find_spec(name: str) -> BatchSpec:
    """The valid spec whose ``name`` (or file stem) is ``name``; :class:`QueueStateError` 404/422 otherwise."""
    for entry in load_specs():
        if name in (entry.name, Path(entry.file).stem):
            if entry.spec is None:
                raise QueueStateError(422, f"spec {name!r} is invalid: {entry.error}")
            return entry.spec
    raise QueueStateError(404, f"no batch spec named {name!r}")
