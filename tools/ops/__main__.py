"""``python -m tools.ops``: see docs/operations.md."""

from __future__ import annotations

from tools.ops import interrupts
from tools.ops.cli import main

interrupts.install()
raise SystemExit(main())
