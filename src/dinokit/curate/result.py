"""What each curation step returns: the images kept, the images removed (with why), and a summary."""
from __future__ import annotations

from dataclasses import dataclass, field

from .pool import Pool


@dataclass
class StepResult:
    kept: Pool
    removed: Pool | None = None
    summary: dict = field(default_factory=dict)
