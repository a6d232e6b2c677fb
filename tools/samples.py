"""The sample uploads of ``make run``: a few generated images and a batch file, offered to
the routes that watch them, and where their results landed once they are delivered."""

from __future__ import annotations

import io
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import quote

from azure.storage.blob import BlobServiceClient, ContentSettings

from handlers import thumbnails
from handlers.batch_ledger import ledger_prefix
from handlers.settings import Settings
from tools.eventsource import Report
from tools.routes import Route, Routes


@dataclass
class SampleWatch:
    """Collects the final fate of the sample uploads' deliveries (a delivery listener)."""

    blobs: set[str] = field(default_factory=set)
    finished: dict[str, str] = field(default_factory=dict)
    lock: threading.Condition = field(default_factory=threading.Condition)

    def __call__(self, report: Report) -> None:
        if report.final is None or report.delivery.blob not in self.blobs:
            return
        with self.lock:
            self.finished[report.delivery.blob] = report.final
            self.lock.notify_all()

    def wait(self, deadline: float) -> None:
        with self.lock:
            while not self.blobs <= self.finished.keys():
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self.lock.wait(timeout=left)


def sample_images() -> dict[str, tuple[bytes, str]]:
    """A few images the thumbnailer handles, generated now (no binaries in the repo)."""
    from PIL import Image, ImageDraw

    def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, fmt, **options)
        return buffer.getvalue()

    landscape = Image.linear_gradient("L").resize((1600, 1000)).convert("RGB")
    ImageDraw.Draw(landscape).ellipse((600, 250, 1000, 650), fill=(240, 180, 40))
    badge = Image.new("RGBA", (600, 600), (0, 0, 0, 0))
    ImageDraw.Draw(badge).ellipse((50, 50, 550, 550), fill=(30, 120, 220, 255))
    poster = Image.new("RGB", (500, 800), (250, 250, 245))
    ImageDraw.Draw(poster).rectangle((50, 50, 450, 400), fill=(200, 30, 30))
    return {
        "samples/landscape.jpg": (encode(landscape, "JPEG", quality=90), "image/jpeg"),
        "samples/badge.png": (encode(badge, "PNG"), "image/png"),
        "samples/poster.gif": (encode(poster.convert("P"), "GIF"), "image/gif"),
    }


@dataclass(frozen=True)
class Uploaded:
    route: Route
    name: str
    etag: str  # unquoted, as test.http's requests take it


# In folder scope: the files of the sample folder, uploaded before its marker.
FOLDER_FILES = 10


def upload_samples(
    service: BlobServiceClient,
    routes: Routes,
    watch: SampleWatch,
    folder_marker: str | None = None,
) -> list[Uploaded]:
    """Upload the samples into the folders the routes watch; in folder scope
    (``folder_marker``) the batch sample is a folder of files, then its marker."""
    uploads: list[tuple[Route, str, bytes, str]] = []
    images = _route_for(routes, "create_thumbnail")
    if images is not None:
        for name, (data, content_type) in sample_images().items():
            uploads.append((images, f"{images.folder}{name}", data, content_type))
    batch = _route_for(routes, "dispatch_batch_job")
    if batch is not None and folder_marker:
        folder = f"{batch.folder}sample-drop/"
        for n in range(FOLDER_FILES):
            rows = f"id,text\n{n},part {n}\n".encode()
            # Not watched: the route's marker filter keeps their events from any function.
            service.get_blob_client(batch.container, f"{folder}part-{n:02}.csv").upload_blob(
                rows, overwrite=True, content_settings=ContentSettings(content_type="text/csv")
            )
        uploads.append((batch, f"{folder}{folder_marker}", b"", "application/octet-stream"))
    elif batch is not None:
        rows = b"id,text\n1,hello\n2,world\n"
        uploads.append((batch, f"{batch.folder}sample-batch.csv", rows, "text/csv"))
    done = []
    for route, name, data, content_type in uploads:
        watch.blobs.add(f"{route.container}/{name}")
        answer = service.get_blob_client(route.container, name).upload_blob(
            data, overwrite=True, content_settings=ContentSettings(content_type=content_type)
        )
        done.append(Uploaded(route, name, str(answer["etag"]).strip('"')))
    return done


def describe_results(
    service: BlobServiceClient,
    routes: Routes,
    settings: Settings,
    uploaded: list[Uploaded],
    watch: SampleWatch,
) -> str:
    """One line per sample: its version, what became of its delivery, where its result is."""
    base = service.url.rstrip("/")
    lines = []
    for sample in uploaded:
        route, name = sample.route, sample.name
        blob = f"{route.container}/{name}"
        fate = watch.finished.get(blob, "still pending (see the delivery lines)")
        if route.function == "create_thumbnail":
            container = settings.thumbnail_container
            thumbnail = thumbnails.thumbnail_name(route.container, name)
            found = _exists(service, container, thumbnail, deadline=time.monotonic() + 5)
            where = f"{base}/{container}/{quote(thumbnail)}" if found else "no thumbnail yet"
            lines.append(f"  {blob} (eTag {sample.etag}): {fate}; thumbnail -> {where}")
        elif route.function == "dispatch_batch_job":
            records = _dispatch_records(service, settings, route, name)
            lines.append(f"  {blob} (eTag {sample.etag}): {fate}; dispatch -> {records}")
    dead = routes.containers.get("deadLetter")
    return "samples:\n" + "\n".join(lines) + f"\n  dead-lettered events go to {base}/{dead}/"


def _dispatch_records(
    service: BlobServiceClient, settings: Settings, route: Route, name: str
) -> str:
    if settings.batch.endpoint_uri is None:
        return "dry-run (BATCH_ENDPOINT_URI unset): the job request is in the log above"
    base = service.url.rstrip("/")
    ledger = settings.ledger_container
    prefix = ledger_prefix(route.container, name)
    records = [item.name for item in service.get_container_client(ledger).list_blobs(prefix)]
    return (
        ", ".join(f"{base}/{ledger}/{quote(record)}" for record in records)
        or "no dispatch record yet"
    )


def _route_for(routes: Routes, function: str) -> Route | None:
    return next((route for route in routes.subscriptions if route.function == function), None)


def _exists(service: BlobServiceClient, container: str, name: str, deadline: float) -> bool:
    blob = service.get_blob_client(container, name)
    while True:
        if blob.exists():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
