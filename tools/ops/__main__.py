"""``python -m tools.ops``: see README, "Operate"."""

from __future__ import annotations

from tools.ops.cli import main

raise SystemExit(main())
