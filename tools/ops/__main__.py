"""``python -m tools.ops``: see tools/OPS.md."""

from __future__ import annotations

from tools.ops.cli import main

raise SystemExit(main())
