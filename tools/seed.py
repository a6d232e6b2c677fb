"""Many small blobs into Azurite quickly, for tests and benchmarks that need thousands.

The storage SDK spends a few milliseconds of CPU per request, so 10,000 uploads through it
take about a minute on a shared machine; plain PUTs with a container SAS over kept-alive
connections take a few seconds. Only for seeding: the code under test uses the SDK.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, urlsplit

from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas

from tools import azurite

# (blob name, content, metadata)
Blob = tuple[str, bytes, Mapping[str, str]]


def put_blobs(blob_url: str, container: str, blobs: Iterable[Blob], workers: int = 8) -> int:
    """Create ``container`` if needed and upload every blob (overwriting); return how many.

    ``blob_url`` is Azurite's account URL (``http://127.0.0.1:<port>/devstoreaccount1``).
    """
    service = BlobServiceClient.from_connection_string(
        azurite.connection_string(int(urlsplit(blob_url).port or 0))
    )
    client = service.get_container_client(container)
    if not client.exists():
        client.create_container()
    sas = generate_container_sas(
        azurite.ACCOUNT,
        container,
        account_key=azurite.well_known_key(),
        permission=ContainerSasPermissions(write=True, create=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    parts = urlsplit(blob_url)
    local = threading.local()

    def put(blob: Blob) -> None:
        name, data, metadata = blob
        connection = getattr(local, "connection", None)
        if connection is None:
            connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
            local.connection = connection
        headers = {"x-ms-blob-type": "BlockBlob", "Content-Length": str(len(data))}
        headers.update({f"x-ms-meta-{key}": value for key, value in metadata.items()})
        path = f"{parts.path}/{container}/{quote(name, safe='/')}?{sas}"
        connection.request("PUT", path, body=data, headers=headers)
        response = connection.getresponse()
        response.read()
        if response.status != 201:
            raise RuntimeError(f"PUT {name} answered {response.status} {response.reason}")

    items = list(blobs)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(put, blob) for blob in items]:
            future.result()
    return len(items)
