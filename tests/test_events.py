"""Event parsing: both schemas, names that must round-trip, and everything it refuses."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from handlers.errors import InvalidEventError
from handlers.events import AccountEndpoint, BlobCreated, Ignored, parse_event
from tools import events as build

LOCAL = AccountEndpoint("devstoreaccount1", "http://127.0.0.1:10000/devstoreaccount1")
AZURE = AccountEndpoint("contosodata", "https://contosodata.blob.core.windows.net")


def event(name: str = "a.jpg", container: str = "images", **options: Any) -> dict[str, Any]:
    account = options.pop("account", LOCAL)
    return build.blob_created(
        account=account.name,
        service_url=account.blob_url,
        container=container,
        blob_name=name,
        etag='"0x8D4BCC2E4835CD0"',
        content_length=42,
        content_type="image/jpeg",
        **options,
    )


@pytest.mark.parametrize("schema", [build.EVENT_GRID_SCHEMA, build.CLOUD_EVENT_SCHEMA])
def test_both_schemas_parse_to_the_same_value(schema: str) -> None:
    raw = event("photos/2026/cat.jpg", schema=schema, event_id="ev-1")
    parsed = parse_event(raw, LOCAL)
    assert isinstance(parsed, BlobCreated)
    assert parsed.schema == schema
    assert (parsed.event_id, parsed.account, parsed.container) == (
        "ev-1",
        "devstoreaccount1",
        "images",
    )
    assert parsed.blob_name == "photos/2026/cat.jpg"
    assert parsed.etag == '"0x8D4BCC2E4835CD0"'
    assert parsed.version == "0x8D4BCC2E4835CD0"
    assert (parsed.content_type, parsed.content_length, parsed.api) == ("image/jpeg", 42, "PutBlob")
    assert parsed.url == raw["data"]["url"]


@pytest.mark.parametrize(
    "name",
    [
        "with space.jpg",
        "hash#tag.jpg",
        "per%cent.jpg",
        "per%20cent-literal.jpg",
        "plus+sign.jpg",
        "ünïcødé/日本語/фото.jpg",
        "deep/ly/nested/folders/x.jpg",
        "emoji-😀.png",
        "quote'and\"double.jpg",
        "semi;colon,comma=eq&amp.jpg",
    ],
)
def test_names_round_trip(name: str) -> None:
    parsed = parse_event(event(name), LOCAL)
    assert isinstance(parsed, BlobCreated)
    assert parsed.blob_name == name


def test_subject_without_leading_slash_and_encoded_subject() -> None:
    raw = event("a b.jpg")
    raw["subject"] = raw["subject"].lstrip("/")
    assert parse_event(raw, LOCAL).blob_name == "a b.jpg"  # type: ignore[union-attr]
    raw["subject"] = raw["subject"].replace("a b.jpg", "a%20b.jpg")
    assert parse_event(raw, LOCAL).blob_name == "a b.jpg"  # type: ignore[union-attr]


def test_azure_blob_and_dfs_urls() -> None:
    raw = event("x/y.png", account=AZURE)
    assert raw["data"]["url"] == "https://contosodata.blob.core.windows.net/images/x/y.png"
    assert parse_event(raw, AZURE).blob_name == "x/y.png"  # type: ignore[union-attr]
    raw["data"]["url"] = "https://contosodata.dfs.core.windows.net/images/x/y.png"
    raw["data"]["api"] = "FlushWithClose"
    assert parse_event(raw, AZURE).blob_name == "x/y.png"  # type: ignore[union-attr]


def test_ignored_events() -> None:
    other = event()
    other["eventType"] = "Microsoft.Storage.BlobDeleted"
    assert isinstance(parse_event(other, LOCAL), Ignored)
    create_file = event()
    create_file["data"]["api"] = "CreateFile"
    ignored = parse_event(create_file, LOCAL)
    assert isinstance(ignored, Ignored)
    assert "FlushWithClose" in ignored.reason


def _broken(change: str) -> object:
    raw: dict[str, Any] = event("a.jpg")
    if change == "not an object":
        return ["a list"]
    if change == "no id":
        del raw["id"]
    elif change == "numeric id":
        raw["id"] = 7
    elif change == "no data":
        del raw["data"]
    elif change == "data is a string":
        raw["data"] = "PutBlob"
    elif change == "no url":
        del raw["data"]["url"]
    elif change == "no etag":
        del raw["data"]["eTag"]
    elif change == "no api":
        del raw["data"]["api"]
    elif change == "bad subject":
        raw["subject"] = "/containers/images/a.jpg"
    elif change == "subject names another blob":
        raw["subject"] = raw["subject"].replace("a.jpg", "b.jpg")
    elif change == "subject names another container":
        raw["subject"] = raw["subject"].replace("/images/", "/other/")
    elif change == "url of another host":
        raw["data"]["url"] = "https://evil.example/images/a.jpg"
    elif change == "url of another account":
        raw["data"]["url"] = "http://127.0.0.1:10000/otheraccount/images/a.jpg"
    elif change == "url on another port":
        raw["data"]["url"] = "http://127.0.0.1:9999/devstoreaccount1/images/a.jpg"
    elif change == "url with a query":
        raw["data"]["url"] += "?sv=2020&sig=abc"
    elif change == "url with credentials":
        raw["data"]["url"] = "http://user:pw@127.0.0.1:10000/devstoreaccount1/images/a.jpg"
    elif change == "topic of another account":
        raw["topic"] = build.topic("otheraccount")
    elif change == "negative length":
        raw["data"]["contentLength"] = -1
    elif change == "boolean length":
        raw["data"]["contentLength"] = True
    elif change == "oversized subject":
        raw["subject"] = "/blobServices/default/containers/images/blobs/" + "x" * 5000
    elif change == "dot segments":
        raw["subject"] = raw["subject"].replace("a.jpg", "x/../a.jpg")
        raw["data"]["url"] = raw["data"]["url"].replace("a.jpg", "x/../a.jpg")
    elif change == "control characters":
        raw["subject"] = raw["subject"].replace("a.jpg", "a\x07.jpg")
        raw["data"]["url"] = raw["data"]["url"].replace("a.jpg", "a%07.jpg")
    elif change == "1025 characters":
        name = "n" * 1025
        raw["subject"] = raw["subject"].replace("a.jpg", name)
        raw["data"]["url"] = raw["data"]["url"].replace("a.jpg", name)
    elif change == "invalid utf-8 in url":
        raw["data"]["url"] = raw["data"]["url"].replace("a.jpg", "a%ff.jpg")
    return raw


BROKEN = [
    ("not an object", "not a JSON object"),
    ("no id", "id is missing"),
    ("numeric id", "id is a int"),
    ("no data", "data is missing"),
    ("data is a string", "data is missing or not a JSON object"),
    ("no url", "data.url is missing"),
    ("no etag", "data.eTag is missing"),
    ("no api", "data.api is missing"),
    ("bad subject", "is not /blobServices/default/containers/"),
    ("subject names another blob", "but data.url names"),
    ("subject names another container", "but data.url names"),
    ("url of another host", "is not a blob of storage account devstoreaccount1"),
    ("url of another account", "is not a blob of storage account"),
    ("url on another port", "is not a blob of storage account"),
    ("url with a query", "is not a blob of storage account"),
    ("url with credentials", "is not a blob of storage account"),
    ("topic of another account", "topic names storage account 'otheraccount'"),
    ("negative length", "contentLength -1"),
    ("boolean length", "contentLength True"),
    ("oversized subject", "has 5046 characters"),
    ("dot segments", "'.' or '..' segment"),
    ("control characters", "control characters"),
    ("1025 characters", "1025 characters"),
    ("invalid utf-8 in url", "is not a blob of storage account"),
]


@pytest.mark.parametrize(("change", "message"), BROKEN, ids=[b[0] for b in BROKEN])
def test_malformed_events_are_permanent_errors_with_a_reason(change: str, message: str) -> None:
    with pytest.raises(InvalidEventError) as caught:
        parse_event(_broken(change), LOCAL)
    assert message in str(caught.value)


def test_parsing_does_not_modify_the_event() -> None:
    raw = event("a.jpg")
    before = copy.deepcopy(raw)
    parse_event(raw, LOCAL)
    assert raw == before
