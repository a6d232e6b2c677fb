"""test.http, sent as a REST client sends it, to a running ``make run``: every request in the
file is answered as the file's header says, and the functions log the outcome it promises."""

from __future__ import annotations

import json
import re
import signal
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.test_local_loop import Loop, loops, start_loop  # noqa: F401 (loops is a fixture)
from tools import azurite

ROOT = Path(__file__).resolve().parent.parent
HTTP_FILE = ROOT / "test.http"

pytestmark = [pytest.mark.azurite, pytest.mark.slow]


@dataclass
class Request:
    title: str
    method: str
    url: str
    headers: dict[str, str]
    body: str


def parse_http_file(text: str, overrides: dict[str, str]) -> list[Request]:
    """The .http format both clients read: `@name = value` variables, requests separated by
    `###`, a request line, headers, a blank line, the body; `{{name}}` substituted."""
    variables: dict[str, str] = {}
    requests: list[Request] = []
    blocks = re.split(r"^###", text, flags=re.M)
    for line in blocks[0].splitlines():
        found = re.match(r"^@(\w+)\s*=\s*(.*)$", line)
        if found:
            variables[found[1]] = found[2].strip()
    variables.update(overrides)

    def substitute(value: str) -> str:
        def one(match: re.Match[str]) -> str:
            assert match[1] in variables, f"test.http uses an undefined variable {match[1]}"
            return variables[match[1]]

        return re.sub(r"\{\{(\w+)\}\}", one, value)

    for block in blocks[1:]:
        title, _, rest = block.partition("\n")
        head, _, body = rest.strip("\n").partition("\n\n")
        lines = [line for line in head.splitlines() if not line.startswith("#")]
        method, url = lines[0].split(" ", 1)
        headers = dict(line.split(": ", 1) for line in lines[1:])
        requests.append(
            Request(title.strip(), method, substitute(url.strip()), headers, substitute(body))
        )
    return requests


def send(request: Request) -> tuple[int, str]:
    sent = urllib.request.Request(
        request.url, data=request.body.encode(), headers=request.headers, method=request.method
    )
    try:
        with urllib.request.urlopen(sent, timeout=60) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def sample_etags(loop: Loop) -> dict[str, str]:
    """The eTag make run printed for each sample it uploaded."""
    text = "".join(loop.output)
    return dict(re.findall(r"^\s+(\S+) \(eTag (\S+)\):", text, flags=re.M))


def test_the_file_declares_one_handshake_and_a_notification_per_function() -> None:
    requests = parse_http_file(HTTP_FILE.read_text(encoding="utf-8"), {})
    kinds = [(r.headers["aeg-event-type"], r.url.split("functionName=")[1]) for r in requests]
    assert kinds == [
        ("SubscriptionValidation", "create_thumbnail&code=local-no-key-needed"),
        ("Notification", "create_thumbnail&code=local-no-key-needed"),
        ("Notification", "dispatch_batch_job&code=local-no-key-needed"),
    ]
    for request in requests:
        assert request.method == "POST"
        assert "/runtime/webhooks/eventgrid?" in request.url
        json.loads(request.body)  # every body is JSON once substituted


def test_every_request_in_test_http_is_answered_by_make_run_as_documented(
    tmp_path: Path,
    loops: list[Loop],  # noqa: F811
) -> None:
    functions_port = azurite.free_port()
    loop = start_loop(tmp_path / "state", "--functions-port", str(functions_port))
    loops.append(loop)
    loop.wait_for("local loop ready", 90)
    loop.wait_for("Event Grid webhook", 5)
    etags = sample_etags(loop)
    assert set(etags) == {
        "images/samples/landscape.jpg",
        "images/samples/badge.png",
        "images/samples/poster.gif",
        "batch-input/incoming/sample-batch.csv",
    }
    overrides = {
        "host": f"http://127.0.0.1:{functions_port}",
        "blobEndpoint": f"http://127.0.0.1:{loop.blob_port}/devstoreaccount1",
    }
    text = HTTP_FILE.read_text(encoding="utf-8")
    handshake, thumbnail, batch = parse_http_file(text, overrides)

    status, body = send(handshake)
    code = json.loads(handshake.body)[0]["data"]["validationCode"]
    assert (status, json.loads(body)) == (200, {"validationResponse": code})

    # As written, the eTag is no version of the blob: the function leaves it to the real one.
    assert send(thumbnail)[0] == 202
    event_id = json.loads(thumbnail.body)[0]["id"]
    line = loop.wait_for(f"create_thumbnail event={event_id}", 30)
    assert "blob=images/samples/landscape.jpg outcome=superseded" in line
    # With the eTag make run printed, it is the version already thumbnailed.
    overrides["imageETag"] = etags["images/samples/landscape.jpg"]
    _, again, _ = parse_http_file(text, overrides)
    assert send(again)[0] == 202
    assert "outcome=duplicate" in loop.wait_for(f"create_thumbnail event={event_id}", 30)

    assert send(batch)[0] == 202
    event_id = json.loads(batch.body)[0]["id"]
    line = loop.wait_for(f"dispatch_batch_job event={event_id}", 30)
    assert "blob=batch-input/incoming/sample-batch.csv outcome=dry-run" in line

    assert loop.stop(signal.SIGINT) == 0


def test_the_webhook_refuses_what_the_host_refuses(
    tmp_path: Path,
    loops: list[Loop],  # noqa: F811
) -> None:
    """The local webhook is only worth testing test.http against if it is as strict as the
    host: no aeg-event-type is a 400, a validation event without a code is a 400."""
    functions_port = azurite.free_port()
    loop = start_loop(tmp_path / "state", "--no-samples", "--functions-port", str(functions_port))
    loops.append(loop)
    loop.wait_for("Event Grid webhook", 90)
    url = f"http://127.0.0.1:{functions_port}/runtime/webhooks/EventGrid?functionName=create_thumbnail"
    bare = Request("bare", "POST", url, {"Content-Type": "application/json"}, "[]")
    assert send(bare)[0] == 400
    no_code = Request(
        "no code",
        "POST",
        url,
        {"Content-Type": "application/json", "aeg-event-type": "SubscriptionValidation"},
        json.dumps([{"data": {}}]),
    )
    assert send(no_code)[0] == 400
    unsubscribe = Request("unsubscribe", "POST", url, {"aeg-event-type": "Unsubscribe"}, "[]")
    assert send(unsubscribe)[0] == 202
    assert loop.stop(signal.SIGINT) == 0
