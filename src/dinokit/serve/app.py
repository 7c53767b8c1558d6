"""The HTTP side of `dinokit serve` (FastAPI): the JSON/multipart API, bearer-token auth, Prometheus metrics
and the page. Every bad request is answered with a 4xx naming the reason and costs the server nothing
else; model work never runs on the event loop.

Images come as multipart fields named `image` (one or more) or as JSON `{"images": [base64, ...]}`
(`"image"` for one); search also takes `{"text": ...}` for a model that reads text.
"""
from __future__ import annotations

import base64
import binascii
import json
import secrets
import time
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException

from ..data import ImageLoadError
from .batching import Overloaded
from .collection import Refused
from .service import PICTURES, Service

_IMAGES_BODY = {"requestBody": {"content": {
    "multipart/form-data": {"schema": {"type": "object", "properties": {
        "image": {"type": "array", "items": {"type": "string", "format": "binary"}}}}},
    "application/json": {"schema": {"type": "object", "properties": {
        "images": {"type": "array", "items": {"type": "string", "format": "byte"}},
        "image": {"type": "string", "format": "byte"}}}}}}}
_SEARCH_BODY = {"requestBody": {"content": {
    "multipart/form-data": {"schema": {"type": "object", "properties": {
        "image": {"type": "array", "items": {"type": "string", "format": "binary"}}, "text": {"type": "string"},
        "k": {"type": "integer"}}}},
    "application/json": {"schema": {"type": "object", "properties": {
        "images": {"type": "array", "items": {"type": "string", "format": "byte"}}, "image": {"type": "string", "format": "byte"},
        "text": {"type": "string"}, "k": {"type": "integer"}}}}}}}


class _Metrics:
    def __init__(self, service: Service):
        self.registry = CollectorRegistry()
        self.requests = Counter("dinokit_requests", "HTTP requests", ["endpoint", "status"], registry=self.registry)
        self.latency = Histogram("dinokit_request_seconds", "request latency", ["endpoint"], registry=self.registry,
                                 buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
        self.batch_size = Histogram("dinokit_batch_size", "images per forward pass", ["model"], registry=self.registry,
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128))
        self.batch_seconds = Histogram("dinokit_batch_seconds", "time of one forward pass", ["model"], registry=self.registry)
        self.images = Counter("dinokit_images", "images through the model", ["model"], registry=self.registry)
        self.rejected = Counter("dinokit_overloaded", "requests refused with 503 (queue full)", registry=self.registry)
        Gauge("dinokit_queue_depth", "images waiting for a model", registry=self.registry).set_function(service.queue_depth)

    def batch(self, kind: str, size: int, seconds: float) -> None:
        self.batch_size.labels(kind).observe(size)
        self.batch_seconds.labels(kind).observe(seconds)
        self.images.labels(kind).inc(size)


def create_app(service: Service, *, token: str | None = None) -> FastAPI:
    """The application; the service's batchers start and stop with it."""
    metrics = _Metrics(service)

    @asynccontextmanager
    async def lifespan(app):
        service.start(on_batch=metrics.batch)
        try:
            yield
        finally:
            service.stop()

    app = FastAPI(title="dinokit serve", version=_version(), lifespan=lifespan,
                  description="Embeddings, search and classification with DINOv2; the page is at /.")

    def authorized(request: Request) -> None:
        if token is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip().encode(), token.encode()):
            raise HTTPException(401, "this server needs a bearer token: send the header 'Authorization: Bearer TOKEN'",
                                headers={"WWW-Authenticate": "Bearer"})

    auth = [Depends(authorized)]

    @app.middleware("http")
    async def measure(request: Request, call_next):
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        endpoint = getattr(route, "path", "other")
        metrics.requests.labels(endpoint, str(response.status_code)).inc()
        metrics.latency.labels(endpoint).observe(time.perf_counter() - start)
        return response

    @app.exception_handler(Overloaded)
    async def overloaded(request: Request, error: Overloaded):
        metrics.rejected.inc()
        return JSONResponse({"detail": str(error)}, status_code=503, headers={"Retry-After": str(error.retry_after)})

    @app.exception_handler(ImageLoadError)
    async def bad_image(request: Request, error: ImageLoadError):
        too_large = error.reason.startswith(("decompression bomb", "resizing"))
        return JSONResponse({"detail": f"{error.path}: {error.reason}"}, status_code=413 if too_large else 400)

    @app.exception_handler(Refused)
    async def refused(request: Request, error: Refused):
        return JSONResponse({"detail": error.reason}, status_code=error.status)

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok", "queue_depth": service.queue_depth()}

    @app.get("/metrics", dependencies=auth)
    async def prometheus():
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/info", dependencies=auth)
    async def info():
        return service.info()

    @app.post("/v1/embed", dependencies=auth, openapi_extra=_IMAGES_BODY)
    async def embed(request: Request):
        """Embeddings of one or more images, as `dinokit embed` computes them with the same settings."""
        images, _ = await _read_request(request, service)
        vectors = await service.embed(await _pixels(service, _need_images(images)))
        o = service.options
        return {"model": o.model, "pooling": o.pooling, "normalize": o.normalize, "dim": int(vectors.shape[1]),
                "embeddings": vectors.tolist()}

    @app.post("/v1/search", dependencies=auth, openapi_extra=_SEARCH_BODY)
    async def search(request: Request):
        """The k nearest images of the index for each query image (or text, for a model that reads text)."""
        if service.index is None:
            raise HTTPException(409, "this server has no index: start it with --index INDEX")
        images, fields = await _read_request(request, service)
        k = _int_field(fields, "k", 10, 1, 1000)
        text = fields.get("text")
        if text is not None:
            if not service.reads_text:
                raise HTTPException(400, f"{service.options.model} does not read text: text search needs an index of "
                                         "dino.txt embeddings (`dinokit embed --model dinotxt`)")
            texts = [text] if isinstance(text, str) else text
            if images or not texts or not all(isinstance(t, str) and t.strip() for t in texts) or len(texts) > 64:
                raise HTTPException(400, "'text' must be a non-empty string or a list of up to 64 (and no images with it)")
            vectors = await run_in_threadpool(service.embed_text, texts)
            return {"results": [{"hits": hits} for hits in service.search(vectors, k)]}
        vectors = await service.embed(await _pixels(service, _need_images(images)))
        return {"results": [{"hits": hits} for hits in service.search(vectors, k)]}

    @app.post("/v1/classify", dependencies=auth, openapi_extra=_IMAGES_BODY)
    async def classify(request: Request):
        """The top-k labels of each image from the server's classifier (--classifier)."""
        if service.classifier is None:
            raise HTTPException(409, "this server has no classifier: start it with --classifier (e.g. dinov2_vits14_lc)")
        images, fields = await _read_request(request, service)
        top_k = _int_field(fields, "top_k", 5, 1, 1000)
        pixels = await _pixels(service, _need_images(images), service.classifier_processor)
        return {"results": [{"predictions": p} for p in await service.classify(pixels, top_k)]}

    @app.get("/v1/duplicates", dependencies=auth)
    async def duplicates():
        """The groups of the `dinokit dedup --json` result the server was started with (--duplicates)."""
        key = service.collection.key
        return {"groups": [[{"path": p, "key": key(p)} for p in group] for group in service.groups]}

    @app.get("/v1/thumbnail", dependencies=auth, responses={200: {"content": {"image/jpeg": {}}}})
    async def thumbnail(path: str = Query(..., description="a path as the answers name it (`key`)"),
                        size: int = Query(256, ge=16, le=1024)):
        data = await run_in_threadpool(service.thumbnail, path, size)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/v1/viz/{kind}", dependencies=auth, responses={200: {"content": {"image/png": {}}}})
    async def picture(kind: str, path: str = Query(..., description="a path as the answers name it (`key`)")):
        """The picture `dinokit viz pca` or `dinokit viz attention` draws for an image of the collection."""
        if kind not in PICTURES:
            raise HTTPException(404, f"no picture {kind!r}: one of {', '.join(PICTURES)}")
        data = await run_in_threadpool(service.picture, kind, path)
        return Response(data, media_type="image/png")

    page = resources.files("dinokit.serve") / "page"
    app.mount("/page", StaticFiles(directory=str(page)), name="page")

    @app.get("/", include_in_schema=False)
    async def index_page():
        return Response((page / "index.html").read_bytes(), media_type="text/html; charset=utf-8")

    return app


async def _read_request(request: Request, service: Service) -> tuple[list[tuple[str, bytes]], dict]:
    """(named images, other fields) of a multipart or JSON body no larger than the limit."""
    limit = service.limits.max_request_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"the request is {int(declared)} bytes; this server takes at most {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, f"the request is larger than {limit} bytes, the most this server takes")
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        images, fields = await _multipart(request, bytes(body), service.limits.max_images_per_request)
    elif kind in ("application/json", ""):
        images, fields = _json_body(bytes(body))
    else:
        raise HTTPException(415, f"send multipart/form-data or application/json, not {kind}")
    most = min(service.limits.max_images_per_request, service.limits.max_queue)  # more could never be queued
    if len(images) > most:
        raise HTTPException(413, f"{len(images)} images in one request; this server takes at most {most}")
    return images, fields


async def _multipart(request: Request, body: bytes, max_files: int) -> tuple[list[tuple[str, bytes]], dict]:
    sent = False

    async def replay():
        nonlocal sent
        if sent:
            return {"type": "http.request", "body": b"", "more_body": False}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=max_files + 1, max_fields=100)
    except (StarletteHTTPException, MultiPartException, ValueError, KeyError, AssertionError) as e:
        raise HTTPException(400, f"not a readable multipart body ({getattr(e, 'detail', None) or e})") from None
    images, fields = [], {}
    try:
        for name, value in form.multi_items():
            if hasattr(value, "read"):
                if name != "image":
                    raise HTTPException(400, f"unexpected file field {name!r}: images go in fields named 'image'")
                images.append((value.filename or "upload", await value.read()))
            else:
                fields[name] = value
    finally:
        await form.close()  # parts over 1 MB were spooled to temporary files: deleted now
    return images, fields


def _json_body(body: bytes) -> tuple[list[tuple[str, bytes]], dict]:
    try:
        data = json.loads(body or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise HTTPException(400, f"the body is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise HTTPException(400, "the JSON body must be an object: {\"images\": [base64, ...]}")
    encoded = data.pop("images", None) or ([data.pop("image")] if data.get("image") is not None else [])
    if not isinstance(encoded, list) or not all(isinstance(e, str) for e in encoded):
        raise HTTPException(400, "'images' must be a list of base64 strings")
    images = []
    for i, text in enumerate(encoded):
        try:
            images.append((f"images[{i}]", base64.b64decode(text.split(",", 1)[-1] if text.startswith("data:") else text,
                                                           validate=True)))
        except (binascii.Error, ValueError):
            raise HTTPException(400, f"images[{i}] is not valid base64") from None
    return images, data


def _need_images(images: list) -> list:
    if not images:
        raise HTTPException(400, "no image in the request: send multipart fields named 'image' or JSON {\"images\": [...]}")
    return images


def _int_field(fields: dict, name: str, default: int, lo: int, hi: int) -> int:
    value = fields.get(name, default)
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise HTTPException(400, f"{name} must be an integer, got {value!r}") from None
    if not lo <= number <= hi or isinstance(value, float) and value != number:
        raise HTTPException(400, f"{name} must be an integer from {lo} to {hi}, got {value!r}")
    return number


async def _pixels(service: Service, images: list[tuple[str, bytes]], processor=None) -> list:
    """Decode and preprocess off the event loop; the first bad image names itself (and its position)."""
    def decode_all():
        out = []
        for i, (name, data) in enumerate(images):
            try:
                out.append(service.pixels(data, name, processor))
            except ImageLoadError as e:
                raise ImageLoadError(f"{name} (image {i + 1} of {len(images)})", e.reason) from None
            except Exception as e:  # noqa: BLE001 - a transform failing on one odd image is that image's fault
                raise ImageLoadError(f"{name} (image {i + 1} of {len(images)})",
                                     f"preprocessing failed: {type(e).__name__}: {e}") from None
        return out

    return await run_in_threadpool(decode_all)


def _version() -> str:
    from .. import __version__

    return __version__

