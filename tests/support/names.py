"""Names no other test uses, so tests can share one Azurite."""

from __future__ import annotations

import uuid


def unique(prefix: str) -> str:
    """A container name no other test uses (3-63 chars, lowercase)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"
