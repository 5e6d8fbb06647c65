"""The manifest: who the benign principals are and when each labelled attack happened."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Principal:
    """Who reads: (database user, client address without port, application_name)."""

    user: str
    client_addr: str
    application_name: str


@dataclass(frozen=True, slots=True)
class Attack:
    """One labelled attack and the principal whose findings it must produce."""

    name: str
    """One of ATTACKS."""
    principal: Principal
    start_us: int
    """Event time (µs since the epoch, UTC) of the attack's first audit record, as written."""
    end_us: int
    """Event time of its last audit record."""
    half_us: int | None
    """Paging attack only: time of the first record at which the rows read reach half the table."""
    detail: str
    """What happened, for humans."""


@dataclass(frozen=True, slots=True)
class Manifest:
    """What `generate()` wrote: the file, the world it stands for and the attacks in time order."""

    path: str
    seed: int
    log_rows: bool
    table: str
    table_rows: int
    start_us: int
    """Start of the scenario (a Monday 00:00 UTC); every record is at or after it."""
    end_us: int
    """End of the scenario (start + days); every record is before it."""
    records: int
    """csvlog records written (audit or not)."""
    audit_records: int
    """Records with an `AUDIT:` message (any relation)."""
    expected: list[dict[str, str]]
    """`[[expected]]` entries a sensible operator would configure (the nightly backup)."""
    benign: list[Principal]
    """Every principal that wrote benign audit records, in order of first appearance (an
    attack may also use one of them: the analysts' and the DBA's usual principals)."""
    attacks: list[Attack]
    """In time order."""

    def to_json(self) -> str:
        """The manifest as indented JSON."""
        return json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        """Read a manifest written by `to_json`."""
        data: dict[str, Any] = json.loads(text)
        data["benign"] = [Principal(**p) for p in data["benign"]]
        data["attacks"] = [
            Attack(**{**a, "principal": Principal(**a["principal"])}) for a in data["attacks"]
        ]
        return cls(**data)
