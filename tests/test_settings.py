"""Settings: defaults, every check names the setting, identity-based storage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from handlers.errors import ConfigurationError
from handlers.settings import DEFAULTS, SETTINGS, Settings

ROOT = Path(__file__).resolve().parent.parent
LOCAL = {"DATA_STORAGE": "UseDevelopmentStorage=true"}


def test_defaults() -> None:
    settings = Settings.from_env(LOCAL)
    assert settings.thumbnail_container == "thumbnails"
    assert settings.thumbnail_size == 128
    assert settings.thumbnail_format == "auto"
    assert settings.ledger_container == "batch-dispatch"
    assert settings.deadletter_container == "deadletter"
    assert settings.output_containers == {"thumbnails", "batch-dispatch", "deadletter"}
    assert settings.batch.endpoint_uri is None  # dry-run
    assert settings.batch.input_type == "UriFile"
    assert settings.batch.job_scope == "file" and settings.batch.folder_marker == "_SUCCESS"
    assert settings.batch.output_uri is None and settings.batch.output_name == "score"
    assert settings.batch.token_scope == "https://ml.azure.com/.default"
    assert settings.storage.connection_string == "UseDevelopmentStorage=true"


def test_folder_scope_derives_the_input_type_and_an_agreeing_old_setting_is_accepted() -> None:
    folder = {**LOCAL, "BATCH_JOB_SCOPE": "folder", "BATCH_FOLDER_MARKER": "_DONE"}
    assert Settings.from_env(folder).batch.input_type == "UriFolder"
    assert Settings.from_env(folder).batch.folder_marker == "_DONE"
    old = Settings.from_env({**folder, "BATCH_INPUT_TYPE": "UriFolder"})
    assert old.batch.input_type == "UriFolder"
    assert Settings.from_env({**LOCAL, "BATCH_INPUT_TYPE": "UriFile"}).batch.input_type == (
        "UriFile"
    )
    with pytest.raises(ConfigurationError, match="BATCH_INPUT_TYPE"):
        Settings.from_env({**folder, "BATCH_INPUT_TYPE": "UriFile"})


def test_output_templates_resolve_per_job() -> None:
    store = "azureml://datastores/workspaceblobstore/paths/scores/{path}/{job}"
    blob = "https://acct.blob.core.windows.net/scores/{job}"
    for template, expected in [
        (store, "azureml://datastores/workspaceblobstore/paths/scores/in/day1/job-1"),
        (blob, "https://acct.blob.core.windows.net/scores/job-1"),
    ]:
        batch = Settings.from_env({**LOCAL, "BATCH_OUTPUT_URI": template}).batch
        assert batch.output_for("in/day1/", "job-1") == expected
    at_the_root = Settings.from_env({**LOCAL, "BATCH_OUTPUT_URI": store}).batch
    assert at_the_root.output_for("", "job-1") == (
        "azureml://datastores/workspaceblobstore/paths/scores/job-1"
    )


def test_empty_values_mean_unset() -> None:
    settings = Settings.from_env({**LOCAL, "BATCH_ENDPOINT_URI": " ", "THUMBNAIL_SIZE": ""})
    assert settings.batch.endpoint_uri is None
    assert settings.thumbnail_size == 128


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("THUMBNAIL_SIZE", "big", "not a whole number"),
        ("THUMBNAIL_SIZE", "4", "outside 16..2048"),
        ("THUMBNAIL_MAX_PIXELS", "0", "outside"),
        ("THUMBNAIL_DECODE_BUDGET_MB", "-1", "outside 0..65536"),
        ("THUMBNAIL_DECODE_BUDGET_MB", "1 GB", "not a whole number"),
        ("THUMBNAIL_FORMAT", "gif", "'gif' is not one of auto, webp, jpeg, png"),
        ("THUMBNAIL_FORMAT", "avif", "not one of auto, webp, jpeg, png"),
        ("THUMBNAIL_MAX_FRAMES", "0", "outside 1..1000"),
        ("THUMBNAIL_MAX_FRAMES", "all", "not a whole number"),
        ("THUMBNAIL_CONTAINER", "Thumbs", "not a container name"),
        ("THUMBNAIL_CONTAINER", "ab", "not a container name"),
        ("DISPATCH_LEDGER_CONTAINER", "a--b", "not a container name"),
        ("BATCH_ENDPOINT_URI", "http://example.invalid/jobs", "plain http"),
        ("BATCH_ENDPOINT_URI", "ftp://host/jobs", "not an http(s) URL"),
        ("BATCH_INPUT_TYPE", "Literal", "is not used any more"),
        ("BATCH_INPUT_TYPE", "UriFolder", "would start one job per file"),
        ("BATCH_JOB_SCOPE", "files", "not one of file, folder"),
        ("BATCH_FOLDER_MARKER", "done/_SUCCESS", "not a blob name without folders"),
        ("BATCH_FOLDER_MARKER", "..", "not a blob name without folders"),
        ("BATCH_OUTPUT_NAME", "score-1", "not an output name"),
        ("BATCH_OUTPUT_URI", "azureml://datastores/ws/paths/out/{path}", "has no {job}"),
        ("BATCH_OUTPUT_URI", "azureml://datastores/ws/paths/{job}/{when}", "only {path}"),
        ("BATCH_OUTPUT_URI", "azureml://datastores/ws/{job}", "not azureml://datastores/"),
        ("BATCH_OUTPUT_URI", "http://example.invalid/out/{job}", "plain http"),
        ("BATCH_OUTPUT_URI", "ftp://host/out/{job}", "not an http(s) URL"),
        ("BATCH_OUTPUT_URI", "https://acct.blob.core.windows.net/o/{job}?sv=1", "no query"),
        ("BATCH_OUTPUT_URI", "https://acct.blob.core.windows.net/o/{job", "only {path}"),
        ("BATCH_INPUT_NAME", "bad name", "not an input name"),
        ("BATCH_DEPLOYMENT", "-x", "not a deployment name"),
        ("BATCH_TOKEN_SCOPE", "ml.azure.com", "not a scope"),
        ("BATCH_TIMEOUT_SECONDS", "soon", "not a number"),
        ("BATCH_TIMEOUT_SECONDS", "999", "outside"),
        ("DATA_STORAGE", "not a connection string", "not a storage connection string"),
    ],
)
def test_bad_values_name_the_setting(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({**LOCAL, name: value})
    assert caught.value.setting == name
    assert str(caught.value).startswith(f"app setting {name}: ")
    assert message in str(caught.value)


def test_output_containers_must_differ() -> None:
    with pytest.raises(ConfigurationError, match="must differ"):
        Settings.from_env({**LOCAL, "DEADLETTER_CONTAINER": "thumbnails"})


def test_missing_storage_names_every_way_to_set_it() -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({})
    assert caught.value.setting == "DATA_STORAGE"
    assert "DATA_STORAGE__blobServiceUri" in str(caught.value)


def test_identity_based_storage() -> None:
    by_uri = Settings.from_env(
        {
            "DATA_STORAGE__blobServiceUri": "https://acct.blob.core.windows.net/",
            "DATA_STORAGE__clientId": "cid",
        }
    )
    assert by_uri.storage.account_url == "https://acct.blob.core.windows.net"
    assert by_uri.storage.client_id == "cid"
    by_name = Settings.from_env({"DATA_STORAGE__accountName": "acct"})
    assert by_name.storage.account_url == "https://acct.blob.core.windows.net"
    with pytest.raises(ConfigurationError, match="DATA_STORAGE__accountName"):
        Settings.from_env({"DATA_STORAGE__accountName": "Not_An_Account"})


def test_loopback_http_is_allowed_for_stand_ins() -> None:
    for uri in ("http://127.0.0.1:8080/jobs", "http://localhost:1/jobs", "http://[::1]:2/jobs"):
        assert Settings.from_env({**LOCAL, "BATCH_ENDPOINT_URI": uri}).batch.endpoint_uri == uri
    https = "https://ep.westeurope.inference.ml.azure.com/jobs"
    assert Settings.from_env({**LOCAL, "BATCH_ENDPOINT_URI": https}).batch.endpoint_uri == https


def _settings_table(page: str) -> set[str]:
    """Names in the first column of the settings table of docs/settings.md."""
    return {
        line.split("|")[1].strip().strip("`")
        for line in page.splitlines()
        if line.startswith("| `")
    }


def test_sample_and_docs_document_every_setting() -> None:
    sample = json.loads((ROOT / "local.settings.json.sample").read_text())["Values"]
    page = (ROOT / "docs" / "settings.md").read_text()
    assert _settings_table(page) == set(SETTINGS), "docs/settings.md's table and SETTINGS differ"
    for name in SETTINGS:
        assert name in sample, f"{name} missing from local.settings.json.sample"
    for name, default in DEFAULTS.items():
        assert sample[name] == default, f"sample value of {name} differs from the default"
    # The sample's values must be accepted as they are.
    Settings.from_env(sample)
    # A row removed is noticed.
    without = page.replace("| `THUMBNAIL_FORMAT` |", "| THUMBNAIL_FORMAT |")
    assert set(SETTINGS) - _settings_table(without) == {"THUMBNAIL_FORMAT"}


def test_pixel_limit_cannot_exceed_what_pillow_decodes() -> None:
    assert Settings.from_env({**LOCAL, "THUMBNAIL_MAX_PIXELS": "178956970"}).thumbnail_max_pixels
    with pytest.raises(ConfigurationError, match="THUMBNAIL_MAX_PIXELS"):
        Settings.from_env({**LOCAL, "THUMBNAIL_MAX_PIXELS": "178956971"})


def test_tools_read_containers_and_dry_run_from_settings() -> None:
    """Tools build Settings from the host's environment instead of repeating defaults."""
    settings = Settings.from_env({**LOCAL, "DEADLETTER_CONTAINER": "dead"})
    assert settings.output_containers == {"thumbnails", "batch-dispatch", "dead"}
    assert settings.batch.dry_run
    live = Settings.from_env({**LOCAL, "BATCH_ENDPOINT_URI": "https://ep.example/jobs"})
    assert not live.batch.dry_run


@pytest.mark.parametrize("value", ["auto", "webp", "jpeg", "png", "WebP", " JPEG "])
def test_thumbnail_format_accepts_each_format_in_any_case(value: str) -> None:
    chosen = Settings.from_env({**LOCAL, "THUMBNAIL_FORMAT": value}).thumbnail_format
    assert chosen == value.strip().lower()
