"""One pass/fail test of an audit, shared by the memorisation and physics-consistency audits."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class Criterion:
    """One pass/fail test: its measured value, the rule it was held to, the verdict, and an
    optional detail (the per-label or per-case numbers behind the value)."""

    name: str
    value: float
    rule: str
    passed: bool
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
