"""The batch endpoint's settings: where it is, what a job is made of, and the checks on them.

A job covers one file (``BATCH_JOB_SCOPE=file``) or one folder, started when its marker
blob (``BATCH_FOLDER_MARKER``) is written (``folder``). The input type follows from the scope;
``BATCH_INPUT_TYPE``, which once chose it, is refused when it disagrees.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from string import Formatter
from urllib.parse import urlsplit

from handlers.errors import ConfigurationError

JOB_SCOPES = ("file", "folder")
# The setting that chose the input type before the scope did; read only to refuse it.
RETIRED_INPUT_TYPE = "BATCH_INPUT_TYPE"
OUTPUT_FIELDS = frozenset({"path", "job"})
_INPUT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
_DEPLOYMENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,254}$")
# A blob name's last segment, kept to what needs no escaping in a subject filter or a URL.
_MARKER = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
_SLASHES = re.compile(r"/{2,}")
_DATASTORE_PATH = re.compile(r"^azureml://datastores/[A-Za-z0-9_]{1,255}/paths/[^?#]+$")


@dataclass(frozen=True)
class BatchSettings:
    """How to reach the batch endpoint and what to send; ``endpoint_uri`` None means dry-run."""

    endpoint_uri: str | None
    deployment: str | None
    input_name: str
    token_scope: str
    timeout_seconds: float
    track_schedule: str
    job_scope: str = "file"  # one of JOB_SCOPES
    folder_marker: str = "_SUCCESS"
    output_uri: str | None = None  # a template with {path} and {job}
    output_name: str = "score"

    @property
    def dry_run(self) -> bool:
        """No endpoint: the dispatch only logs the request it would send."""
        return self.endpoint_uri is None

    @property
    def folder_scope(self) -> bool:
        return self.job_scope == "folder"

    @property
    def input_type(self) -> str:
        """The job input's ``jobInputType``, which the scope decides."""
        return "UriFolder" if self.folder_scope else "UriFile"

    def output_for(self, path: str, job: str) -> str | None:
        """The output URI of the job ``job`` over ``path`` (the blob's or folder's path in its
        container), or None when no output is configured."""
        if self.output_uri is None:
            return None
        scheme, rest = self.output_uri.format(path=path.strip("/"), job=job).split("://", 1)
        return f"{scheme}://{_SLASHES.sub('/', rest)}"  # an empty {path} leaves no "//"


def read_batch(
    values: Mapping[str, str],
    get: Callable[[str], str],
    check_url: Callable[[str, str], None],
) -> BatchSettings:
    """The batch settings from ``values`` (set, stripped, non-empty) and ``get`` (with
    defaults); raises ConfigurationError naming the setting that is wrong."""
    endpoint = values.get("BATCH_ENDPOINT_URI")
    if endpoint is not None:
        check_url("BATCH_ENDPOINT_URI", endpoint)
    deployment = values.get("BATCH_DEPLOYMENT")
    if deployment is not None and not _DEPLOYMENT_NAME.match(deployment):
        raise ConfigurationError("BATCH_DEPLOYMENT", f"{deployment!r} is not a deployment name")
    input_name = _name("BATCH_INPUT_NAME", get("BATCH_INPUT_NAME"), "input")
    output_name = _name("BATCH_OUTPUT_NAME", get("BATCH_OUTPUT_NAME"), "output")
    scope = get("BATCH_JOB_SCOPE")
    if scope not in JOB_SCOPES:
        raise ConfigurationError(
            "BATCH_JOB_SCOPE", f"{scope!r} is not one of {', '.join(JOB_SCOPES)}"
        )
    _refuse_input_type(values.get(RETIRED_INPUT_TYPE), scope)
    marker = get("BATCH_FOLDER_MARKER")
    if not _MARKER.match(marker) or marker in (".", ".."):
        raise ConfigurationError(
            "BATCH_FOLDER_MARKER",
            f"{marker!r} is not a blob name without folders (letters, digits, _ . -)",
        )
    output = values.get("BATCH_OUTPUT_URI")
    if output is not None:
        _check_output(output, check_url)
    token_scope = get("BATCH_TOKEN_SCOPE")
    if not token_scope.startswith(("https://", "api://")) or " " in token_scope:
        raise ConfigurationError(
            "BATCH_TOKEN_SCOPE",
            f"{token_scope!r} is not a scope like https://ml.azure.com/.default",
        )
    timeout_text = get("BATCH_TIMEOUT_SECONDS")
    try:
        timeout = float(timeout_text)
    except ValueError:
        raise ConfigurationError(
            "BATCH_TIMEOUT_SECONDS", f"{timeout_text!r} is not a number"
        ) from None
    if not 0.1 <= timeout <= 230:
        raise ConfigurationError("BATCH_TIMEOUT_SECONDS", f"{timeout} is outside 0.1..230")
    return BatchSettings(
        endpoint_uri=endpoint,
        deployment=deployment,
        input_name=input_name,
        token_scope=token_scope,
        timeout_seconds=timeout,
        track_schedule=get("BATCH_TRACK_SCHEDULE"),
        job_scope=scope,
        folder_marker=marker,
        output_uri=output,
        output_name=output_name,
    )


def _name(setting: str, value: str, kind: str) -> str:
    if not _INPUT_NAME.match(value):
        raise ConfigurationError(setting, f"{value!r} is not an {kind} name (letters, digits, _)")
    return value


def _refuse_input_type(value: str | None, scope: str) -> None:
    """An old BATCH_INPUT_TYPE is accepted only when it says what the scope already does:
    UriFolder in file scope once sent every file's folder, one job per file."""
    if value is None:
        return
    derived = "UriFolder" if scope == "folder" else "UriFile"
    if value == derived:
        return
    if value == "UriFolder":
        raise ConfigurationError(
            RETIRED_INPUT_TYPE,
            "UriFolder with BATCH_JOB_SCOPE=file would start one job per file over a folder "
            "that is still arriving; set BATCH_JOB_SCOPE=folder (one job per folder, started "
            "by its BATCH_FOLDER_MARKER blob) and remove BATCH_INPUT_TYPE",
        )
    raise ConfigurationError(
        RETIRED_INPUT_TYPE,
        f"{value!r} is not used any more: BATCH_JOB_SCOPE={scope} sends {derived}; "
        "remove BATCH_INPUT_TYPE",
    )


def _check_output(template: str, check_url: Callable[[str, str], None]) -> None:
    """A template with ``{path}`` and ``{job}`` (each job writes a path of its own: Azure ML
    fails a job whose output path exists) that resolves to a datastore path or a blob URL."""
    try:
        fields = {name for _, name, _, _ in Formatter().parse(template) if name is not None}
        sample = template.format(path="folder/file.csv", job="job-1")
    except (ValueError, KeyError, IndexError):
        fields, sample = {"?"}, ""
    if not fields <= OUTPUT_FIELDS:
        raise ConfigurationError(
            "BATCH_OUTPUT_URI",
            f"{template!r}: only {{path}} and {{job}} may appear in braces",
        )
    if "job" not in fields:
        raise ConfigurationError(
            "BATCH_OUTPUT_URI",
            f"{template!r} has no {{job}}: every job needs an output path of its own "
            "(Azure ML fails a job whose output exists)",
        )
    if sample.startswith("azureml://"):
        if not _DATASTORE_PATH.match(sample):
            raise ConfigurationError(
                "BATCH_OUTPUT_URI",
                f"{template!r} is not azureml://datastores/<datastore>/paths/<path>",
            )
        return
    check_url("BATCH_OUTPUT_URI", sample)
    if urlsplit(sample).query:
        raise ConfigurationError("BATCH_OUTPUT_URI", f"{template!r}: a blob URL has no query")
