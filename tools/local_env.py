"""The settings a second shell needs to reach a running ``make run``: .local/ops.env.

The local loop writes it (mode 0600: it holds the identity stand-in's secret) once
everything is up, and removes it when it stops; the ops commands read it when it exists.
Each line is ``NAME='value'``, so ``set -a; . .local/ops.env`` also works in a shell.
``OPS_ENV_FILE`` names another file; set to an empty value, no file is read.
"""

from __future__ import annotations

import contextlib
import os
import shlex
from collections.abc import Mapping, MutableMapping
from pathlib import Path

from handlers.settings import SETTINGS

ROOT = Path(__file__).resolve().parent.parent
FILE_SETTING = "OPS_ENV_FILE"
DEFAULT_FILE = ROOT / ".local" / "ops.env"
# What DefaultAzureCredential's ManagedIdentityCredential reads to find the identity stand-in.
IDENTITY_SETTINGS = ("IDENTITY_ENDPOINT", "IDENTITY_HEADER")


def for_ops(env: Mapping[str, str]) -> dict[str, str]:
    """The part of the function host's environment ``env`` that the ops commands read: the
    app's settings that have a value, and the identity endpoint when the loop runs one."""
    names = [*SETTINGS, *IDENTITY_SETTINGS]
    return {name: env[name] for name in names if env.get(name, "").strip()}


def path(environ: Mapping[str, str] | None = None) -> Path | None:
    """The file to read: OPS_ENV_FILE's, the checkout's .local/ops.env, or None when
    OPS_ENV_FILE is set but empty."""
    value = (os.environ if environ is None else environ).get(FILE_SETTING)
    if value is None:
        return DEFAULT_FILE
    return Path(value) if value.strip() else None


def write(target: Path, values: Mapping[str, str], written_by: str) -> None:
    """Write ``values`` to ``target``, readable by its owner only, replacing it whole."""
    target.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        f"# written by {written_by}; removed when it stops. The ops commands read it;",
        "# a variable set in the environment wins over the same one here.",
    ]
    for name, value in values.items():
        if not name.isidentifier():
            raise ValueError(f"{name!r} is not a variable name")
        lines.append(f"{name}={shlex.quote(value)}")
    partial = target.with_name(target.name + ".partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
        stream.write("\n".join(lines) + "\n")
    os.chmod(partial, 0o600)  # in case it existed with wider rights
    os.replace(partial, target)


def read(source: Path) -> dict[str, str]:
    """The variables in ``source``; ValueError names a line that is not ``NAME=value``."""
    values: dict[str, str] = {}
    for number, line in enumerate(source.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            words = shlex.split(line)
        except ValueError as exc:
            raise ValueError(f"{source}:{number}: {exc}") from None
        name, equals, value = words[0].partition("=") if len(words) == 1 else ("", "", "")
        if not equals or not name.isidentifier():
            raise ValueError(f"{source}:{number}: not NAME=value")
        values[name] = value
    return values


def load(environ: MutableMapping[str, str]) -> tuple[Path, list[str]] | None:
    """Add the file's variables that ``environ`` does not set; return the file and the
    names it supplied, or None when there is no file."""
    source = path(environ)
    if source is None or not source.is_file():
        return None
    values = read(source)
    added = [name for name in values if name not in environ]
    for name in added:
        environ[name] = values[name]
    return source, added


def remove(target: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        target.unlink()
