"""The HTTP side of ``tflocal serve``: a FastAPI app over a :class:`SearchEngine`.

Routes: ``GET /`` (the page), ``GET /health``, ``POST /search`` (JSON: ``query`` or ``image``
(base64), ``k``, ``scorers``), ``GET /image/{id}``, ``GET /heatmap/{id}?q=...&scorer=...``
(PNG, or ``&format=json`` for the words and their weights over the patch grid).

Every error is JSON ``{"error": message}`` with a 4xx status naming the problem; an unexpected
failure is a 500 whose body names the exception type only (the traceback goes to the log).
Model work runs in the server's thread pool, so requests are served concurrently.

(No ``from __future__ import annotations`` here: FastAPI reads the route signatures, whose
types are imported inside the functions that add the routes.)
"""

import base64
import binascii
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tflocal.errors import UserError

log = logging.getLogger("tflocal.app.serve")
STATIC = Path(__file__).parent / "static"


@dataclass
class Limits:
    """Bounds on what one request may ask."""

    max_k: int = 100
    max_query_chars: int = 300
    max_body_bytes: int = 8 << 20
    max_image_pixels: int = 40_000_000
    max_scorers: int = 4


class ApiError(Exception):
    """A request the client can fix: HTTP ``status`` and a message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _query(value: Any, limits: Limits, what: str = "query") -> str:
    if not isinstance(value, str):
        raise ApiError(422, f"{what} must be a string")
    value = value.strip()
    if not value:
        raise ApiError(400, f"{what} is empty: type a caption, e.g. 'a red square left of a blue circle'")
    if len(value) > limits.max_query_chars:
        raise ApiError(
            413, f"{what} has {len(value)} characters; at most {limits.max_query_chars} are accepted"
        )
    return value


def _k(value: Any, limits: Limits) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limits.max_k:
        raise ApiError(422, f"k must be an integer in [1, {limits.max_k}], got {value!r}")
    return value


def _image(value: Any, limits: Limits) -> Any:
    """base64 (or a data: URL) -> RGB PIL image, bounded in bytes and pixels."""
    from PIL import Image

    if not isinstance(value, str):
        raise ApiError(422, "image must be a base64 string (optionally a data: URL)")
    if value.startswith("data:"):
        value = value.partition(",")[2]
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as err:
        raise ApiError(400, f"image is not valid base64 ({err})") from err
    try:
        img = Image.open(io.BytesIO(raw))
        w, h = img.size
        if w * h > limits.max_image_pixels:
            raise ApiError(413, f"image is {w}x{h}; at most {limits.max_image_pixels} pixels are accepted")
        return img.convert("RGB")
    except ApiError:
        raise
    except Exception as err:  # noqa: BLE001 - PIL raises many types for bad files
        raise ApiError(400, f"image is not a readable picture ({type(err).__name__})") from err


def create_app(engine: Any, limits: Limits | None = None) -> Any:
    """The FastAPI app serving ``engine`` (see the module docstring)."""
    from fastapi import FastAPI

    from tflocal import __version__

    served = _Served(engine, limits or Limits())
    app = FastAPI(title="tflocal search", version=__version__, docs_url="/docs", redoc_url=None)
    _add_error_handlers(app)
    _add_page_routes(app, served)
    _add_search_route(app, served)
    _add_image_routes(app, served)
    return app


@dataclass(frozen=True)
class _Served:
    """What the routes serve: the :class:`SearchEngine` and the request limits."""

    engine: Any
    limits: Limits

    def row_of(self, image_id: str) -> int:
        row = self.engine.id_to_row.get(image_id)
        if row is None:
            raise ApiError(404, f"unknown image id {image_id!r}")
        return row

    def scorer_names(self, value: Any) -> list[str]:
        engine, limits = self.engine, self.limits
        names = list(engine.scorers) if value is None else value
        if isinstance(names, str):
            names = [names]
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise ApiError(422, "scorers must be a non-empty list of scorer names")
        if len(names) > limits.max_scorers:
            raise ApiError(422, f"at most {limits.max_scorers} scorers per request")
        unknown = [n for n in names if n not in engine.scorers]
        if unknown:
            raise ApiError(400, f"unknown scorer {unknown[0]!r}; served here: {', '.join(engine.scorers)}")
        return list(dict.fromkeys(names))


def _err(status: int, message: str) -> Any:
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": message}, status_code=status)


def _add_error_handlers(app: Any) -> None:
    """Every error as JSON ``{"error": message}``: 4xx naming the problem, 500 naming the type only."""
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    from tflocal.app.serve.images import ImageUnavailable

    @app.exception_handler(ApiError)
    async def _api(_: Request, e: ApiError) -> JSONResponse:
        return _err(e.status, e.message)

    @app.exception_handler(UserError)
    async def _user(_: Request, e: UserError) -> JSONResponse:
        return _err(400, str(e))

    @app.exception_handler(ImageUnavailable)
    async def _img(_: Request, e: ImageUnavailable) -> JSONResponse:
        return _err(404, f"image unavailable: {e}")

    @app.exception_handler(HTTPException)
    async def _http(_: Request, e: HTTPException) -> JSONResponse:
        return _err(e.status_code, str(e.detail))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        msgs = [f"{'.'.join(str(p) for p in x.get('loc', ()))}: {x.get('msg')}" for x in e.errors()]
        return _err(422, "; ".join(msgs) or "invalid request")

    @app.exception_handler(Exception)
    async def _bug(request: Request, e: Exception) -> JSONResponse:
        log.exception("serve: %s %s failed", request.method, request.url.path)
        return _err(500, f"internal error ({type(e).__name__}); the server log has the details")


def _add_page_routes(app: Any, served: _Served) -> None:
    """``GET /``, ``/favicon.ico`` and ``/health``."""
    from fastapi.responses import HTMLResponse, Response

    from tflocal import __version__

    engine = served.engine

    @app.get("/", response_class=HTMLResponse)
    def page() -> HTMLResponse:
        return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"))

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "version": __version__,
            "cache": str(engine.cache.path),
            "encoder": engine.cache.attrs.get("encoder"),
            "images": int(engine.rows.size),
            "first_stage": "faiss" if engine.index is not None else "exhaustive",
            "k_rerank": engine.k_rerank,
            "scorers": list(engine.scorers),
            "heatmap_scorers": engine.attention_scorers(),
            "limits": served.limits.__dict__,
        }


async def _read_body(request: Any, limits: Limits) -> Any:
    """The request's JSON body, at most ``limits.max_body_bytes`` bytes."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limits.max_body_bytes:
            raise ApiError(413, f"request body over {limits.max_body_bytes} bytes")
    try:
        return json.loads(body or b"null")
    except ValueError as e:
        raise ApiError(400, f"request body is not JSON ({e})") from e


def _add_search_route(app: Any, served: _Served) -> None:
    """``POST /search``: a caption (text -> image) or an image (image -> text)."""
    from fastapi import Request
    from fastapi.responses import JSONResponse
    from starlette.concurrency import run_in_threadpool

    engine, limits = served.engine, served.limits

    @app.post("/search")
    async def search(request: Request) -> JSONResponse:
        req = await _read_body(request, limits)
        if not isinstance(req, dict):
            raise ApiError(422, 'send a JSON object, e.g. {"query": "a red square", "k": 10}')
        extra = set(req) - {"query", "image", "k", "scorers"}
        if extra:
            raise ApiError(
                422, f"unknown field(s) {', '.join(sorted(extra))}; fields: query, image, k, scorers"
            )
        k = _k(req.get("k", 10), limits)
        names = served.scorer_names(req.get("scorers"))
        has_q, has_img = req.get("query") is not None, req.get("image") is not None
        if has_q == has_img:
            raise ApiError(422, "give exactly one of query (text -> image) or image (image -> text)")
        if has_q:
            query = _query(req["query"], limits)
            out = await run_in_threadpool(engine.search, query, k, names)
            for hits in out["results"].values():
                for h in hits:
                    h["url"] = "/image/" + quote(h["id"], safe="/")
            return JSONResponse({"direction": "t2i", "query": query, "k": k, **out})
        image = _image(req["image"], limits)
        out = await run_in_threadpool(engine.search_image, image, k, names)
        return JSONResponse({"direction": "i2t", "k": k, **out})


def _add_image_routes(app: Any, served: _Served) -> None:
    """``GET /image/{id}`` (the file) and ``GET /heatmap/{id}`` (PNG or JSON word weights)."""
    from fastapi.responses import FileResponse, JSONResponse, Response
    from starlette.concurrency import run_in_threadpool

    from tflocal.app.serve.images import ImageUnavailable

    engine, limits = served.engine, served.limits

    @app.get("/image/{image_id:path}")
    async def image(image_id: str) -> Response:
        served.row_of(image_id)
        if engine.images is None:
            raise ImageUnavailable("this server was started without image access")
        path, data, media = await run_in_threadpool(engine.images.file_or_bytes, image_id)
        headers = {"Cache-Control": "max-age=3600"}
        if path is not None:
            return FileResponse(path, media_type=media, headers=headers)
        return Response(data, media_type=media, headers=headers)

    @app.get("/heatmap/{image_id:path}")
    async def heatmap(image_id: str, q: str = "", scorer: str | None = None, format: str = "png") -> Response:
        row = served.row_of(image_id)
        query = _query(q, limits, "q")
        if scorer is not None:
            served.scorer_names([scorer])
        if format == "json":
            used, words, att = await run_in_threadpool(engine.word_map, row, query, scorer)
            grid = [int(g) for g in engine.cache.attrs["grid"]]
            return JSONResponse(
                {"scorer": used, "words": words, "grid": grid, "weights": att.round(5).tolist()}
            )
        if format != "png":
            raise ApiError(422, f"format must be 'png' or 'json', got {format!r}")
        used, png = await run_in_threadpool(engine.heatmap_png, row, query, scorer)
        return Response(png, media_type="image/png", headers={"X-Scorer": used})
