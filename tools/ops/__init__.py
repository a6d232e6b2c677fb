"""Operators' commands: backfill existing blobs and replay Event Grid dead letters.

Both run events through ``handlers.pipeline.handle``, the path every delivery takes, so a
command does exactly what the functions would have done. See docs/operations.md.
"""

from __future__ import annotations

from tools.ops.cli import main

__all__ = ["main"]
