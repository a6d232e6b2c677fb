"""What every ops command works with: the app's context and routes, the one way to handle an
event, and where results and messages go."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from handlers.context import AppContext
from handlers.outcomes import Outcome
from tools.ops.progress import Progress
from tools.routes import Routes

# handlers.pipeline.handle, or a stand-in for it in tests.
Handle = Callable[[str, object, AppContext | None], Outcome]


@dataclass(frozen=True)
class Session:
    ctx: AppContext
    routes: Routes
    handle: Handle
    out: TextIO  # results: the summary and one line per item
    progress: Progress  # the status line; messages go to progress.stream

    @property
    def err(self) -> TextIO:
        return self.progress.stream
