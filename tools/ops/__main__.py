"""``python -m tools.ops``: see README, "Operate"."""

from __future__ import annotations

import signal

from tools.ops.cli import main

# A shell without job control starts background commands with SIGINT ignored, and Python
# then never raises KeyboardInterrupt: an interrupted backfill would run to its end instead
# of saving its checkpoint and exiting 130. Ctrl-C (or kill -INT) always means "stop here".
signal.signal(signal.SIGINT, signal.default_int_handler)
raise SystemExit(main())
