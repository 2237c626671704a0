"""The REST API under ``/api/v1``: the same shapes as the CLI's ``--json``.

Blocking work (search, answers, ingest) runs in worker threads; the event loop only moves
bytes, so a long answer or an ingest never stalls other clients.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import shutil
import time
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from rag import __version__
from rag.answer.base import DeltaCallback
from rag.filetypes import kind_of
from rag.results import Answer
from rag.retrieve.search import Filters
from rag.serve import sse
from rag.serve.jobs import FileState, Job, Jobs
from rag.serve.messages import public_message
from rag.serve.sources import Sources
from rag.serve.state import NotFound, ServerState, answer_json, hit_json, safe_filename, session_json

router = APIRouter(prefix="/api/v1")

_DOC_ID = re.compile(r"^[0-9a-f]{16}$")
# Shown inline as what they are: types a browser cannot run script from.
_INLINE = {".pdf": "application/pdf", ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
# Binary formats a browser cannot show: offered as a download.
_DOWNLOAD = {
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".epub": "application/epub+zip",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
}


#: Longest question or query, in characters.  Past this a question is a document: the
#: probe's 5 MB question cost 14.5 s of CPU, and no retrieval needs more than a few lines.
MAX_QUESTION_CHARS = 8192


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FiltersIn(_Body):
    path: str | list[str] | None = Field(None, description="Glob(s) on the file path, as `--path`.")
    type: str | list[str] | None = Field(None, description="File type(s): pdf, md, txt, html.")
    pages: str | int | None = Field(None, description="Pages: N, N-M, N- or -M.")

    def to_filters(self) -> Filters:
        paths = [self.path] if isinstance(self.path, str) else self.path or []
        types = [self.type] if isinstance(self.type, str) else self.type or []
        return Filters.parse(paths, types, None if self.pages is None else str(self.pages))


class SearchIn(_Body):
    query: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS)
    index: str | None = None
    k: int | None = Field(None, ge=1, le=1000)
    mode: Literal["dense", "keyword", "hybrid"] | None = None
    filters: FiltersIn | None = None


class AskIn(_Body):
    question: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS)
    index: str | None = None
    k: int | None = Field(None, ge=1, le=1000)
    llm: Literal["auto", "openai", "none"] | None = None
    filters: FiltersIn | None = None


class SessionIn(_Body):
    index: str | None = None
    name: str | None = None


class MessageIn(_Body):
    question: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS)


def _state(request: Request) -> ServerState:
    state: ServerState = request.app.state.rag
    return state


def _wants_stream(request: Request) -> bool:
    return "text/event-stream" in request.headers.get("accept", "")


# --- health, status, indexes -------------------------------------------------------------


@router.get("/health")
def health() -> dict[str, Any]:
    """Liveness, without a key (for load balancers)."""
    return {"status": "ok", "version": __version__}


@router.get("/status")
def status(request: Request) -> dict[str, Any]:
    """What `rag status --json` prints, plus how many models this server has loaded."""
    state = _state(request)
    return {**state.status(), "server": {"models_loaded": state.models_loaded(), "version": __version__}}


@router.get("/indexes")
def indexes(request: Request) -> dict[str, Any]:
    state = _state(request)
    listed = state.status()["indexes"]
    return {"default": state.default_index, "indexes": listed}


# --- search and ask ----------------------------------------------------------------------


@router.post("/search")
def search(body: SearchIn, request: Request, response: Response) -> dict[str, Any]:
    """Ranked chunks, as `rag search --json`."""
    filters = body.filters.to_filters() if body.filters else Filters()
    started = time.perf_counter()
    state = _state(request)
    hits = state.search(body.index, body.query, k=body.k, mode=body.mode, filters=filters)
    sources = state.sources(body.index)
    # The engine's share of the request, for clients and benchmarks that want to see HTTP's.
    response.headers["Server-Timing"] = f"engine;dur={1000 * (time.perf_counter() - started):.1f}"
    return {"query": body.query, "results": [hit_json(h, sources) for h in hits]}


@router.post("/ask", response_model=None)
async def ask(body: AskIn, request: Request) -> Response | dict[str, Any]:
    """A cited answer, as `rag ask --json`; streamed as events with `Accept: text/event-stream`."""
    state = _state(request)
    filters = body.filters.to_filters() if body.filters else None
    # Fail before streaming starts: an unknown index is a 404, not an error event.
    await run_in_threadpool(state.engine, body.index)

    def work(on_delta: DeltaCallback | None) -> Answer:
        return state.ask(body.index, body.question, k=body.k, llm=body.llm, filters=filters, on_delta=on_delta)

    return await _answer_response(request, work, body.index)


async def _answer_response(
    request: Request, work: Callable[[DeltaCallback | None], Answer], index: str | None
) -> Response | Any:
    sources = await run_in_threadpool(_state(request).sources, index)
    if not _wants_stream(request):
        answer = await run_in_threadpool(work, None)
        return answer_json(answer, sources)
    heartbeat = request.app.state.config.heartbeat
    worker = sse.Worker(work)
    events = _answer_events(worker, heartbeat, request.app.state.stopping, sources)
    return StreamingResponse(events, media_type="text/event-stream", headers=sse.STREAM_HEADERS)


async def _answer_events(
    worker: sse.Worker, heartbeat: float, stopping: asyncio.Event, sources: Sources
) -> AsyncIterator[bytes]:
    yield sse.PING  # headers and a first byte now, so clients and proxies see the stream open
    try:
        async for kind, value in sse.until(stopping, worker.events(heartbeat)):
            for chunk in _answer_event(kind, value, sources):
                yield chunk
    except sse.Stopping:
        yield sse.event("error", {"message": sse.STOPPING})


def _answer_event(kind: str, value: Any, sources: Sources) -> list[bytes]:
    if kind == "ping":
        return [sse.PING]
    if kind == "delta":
        return [sse.event("token", {"text": piece}) for piece in sse.pieces(value)]
    if kind == "result":
        data = answer_json(value, sources)
        return [
            sse.event("citations", {"citations": data["citations"]}),
            sse.event("done", {"refused": value.refused, "answer": data}),
        ]
    return [sse.event("error", {"message": error_message(value)})]


def error_message(exc: BaseException) -> str:
    return public_message(exc)


# --- sessions ----------------------------------------------------------------------------


@router.get("/sessions")
def sessions(request: Request, index: str | None = None) -> dict[str, Any]:
    infos = _state(request).sessions(index)
    return {"sessions": [{**i.to_dict(), "index": i.index} for i in infos]}


@router.post("/sessions", status_code=201)
def create_session(body: SessionIn, request: Request) -> dict[str, Any]:
    info = _state(request).create_session(body.index, body.name)
    return info.to_dict()


@router.get("/sessions/{name}")
def session(name: str, request: Request) -> dict[str, Any]:
    state = _state(request)
    found = state.session(name)
    return session_json(found, state.sources(found.info.index))


@router.delete("/sessions/{name}", status_code=204)
def delete_session(name: str, request: Request) -> Response:
    _state(request).delete_session(name)
    return Response(status_code=204)


@router.post("/sessions/{name}/messages", response_model=None)
async def session_message(name: str, body: MessageIn, request: Request) -> Response | dict[str, Any]:
    """Ask within a session (saved, shared with `rag chat --session NAME`); streamed like `ask`."""
    state = _state(request)
    found = await run_in_threadpool(state.session, name)

    def work(on_delta: DeltaCallback | None) -> Answer:
        return state.session_message(name, body.question, on_delta=on_delta)

    return await _answer_response(request, work, found.info.index)


# --- documents ---------------------------------------------------------------------------


def _jobs(request: Request) -> Jobs:
    jobs: Jobs = request.app.state.jobs
    return jobs


@router.post("/documents", status_code=202)
async def upload(request: Request, index: Annotated[str | None, Query()] = None) -> JSONResponse:
    """Upload files (multipart field `files`, repeatable); they are ingested by a job.

    A file whose name is taken by a different file is stored as `name (2).ext`, unless the
    form field `replace` is `true`: then it replaces that file as its new version.
    """
    state = _state(request)
    name = state.index_name(index)
    form = await request.form(max_files=1000, max_fields=100)
    try:
        uploads = [f for f in form.getlist("files") if isinstance(f, UploadFile)]
        if not uploads:
            return JSONResponse({"error": "no files: send them as multipart field 'files'"}, status_code=422)
        replace = str(form.get("replace", "")).strip().lower() in ("1", "true", "yes", "on")
        kept = await run_in_threadpool(_keep_uploads, state, name, uploads, replace)
    finally:
        await form.close()
    files = [f for f, _ in kept]
    job = _jobs(request).submit(name, files)
    shown = [{**f.to_dict(), **({"uploaded_as": given} if given != f.name else {})} for f, given in kept]
    return JSONResponse({"job": job.id, "index": name, "files": shown}, status_code=202)


def _keep_uploads(
    state: ServerState, index: str, uploads: list[UploadFile], replace: bool
) -> list[tuple[FileState, str]]:
    """Stage each upload beside the index's folder; files rag cannot read are refused here.

    The job moves them into place when its turn in the index's queue comes, so an upload
    and a delete of the same name apply in the order they were asked for.  Each file is
    paired with the name the client gave.  The staging folder exists only while it holds
    a file: a request whose files are all refused leaves nothing behind.
    """
    folder = state.uploads_dir(index)
    staging = folder / ".incoming" / secrets.token_hex(8)
    kept: list[tuple[FileState, str]] = []
    try:
        for n, upload in enumerate(uploads):
            given = upload.filename or "upload"
            name = safe_filename(given)
            if kind_of(Path(name)) is None:
                suffix = Path(name).suffix or name
                kept.append((FileState(name, None, "failed", f"unsupported file type '{suffix}'"), given))
                continue
            staging.mkdir(parents=True, exist_ok=True)
            staged = staging / f"{n:05d}{Path(name).suffix}"  # two uploads may share a name
            digest = hashlib.sha256()
            with staged.open("wb") as out:
                for block in iter(partial(upload.file.read, 1 << 20), b""):
                    digest.update(block)
                    out.write(block)
            stored = state.claim_upload_name(index, name, digest.hexdigest(), replace=replace)
            kept.append((FileState(stored, (folder / stored).resolve(), staged=staged), given))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for f, _ in kept:
            state.release_upload_name(index, f.name)
        raise
    if not any(f.staged for f, _ in kept):
        shutil.rmtree(staging, ignore_errors=True)
    return kept


@router.get("/jobs/{job_id}")
def job(job_id: str, request: Request) -> dict[str, Any]:
    found = _jobs(request).get(job_id)
    if found is None:
        raise NotFound(f"no job '{job_id}'")
    return found.to_dict()


@router.get("/jobs/{job_id}/events")
async def job_events(job_id: str, request: Request) -> StreamingResponse:
    """The job's events from its start, then live: discovered, loaded, embedded, stored, failed, done."""
    found = _jobs(request).get(job_id)
    if found is None:
        raise NotFound(f"no job '{job_id}'")
    heartbeat = request.app.state.config.heartbeat
    events = _job_events(found, heartbeat, request.app.state.stopping)
    return StreamingResponse(events, media_type="text/event-stream", headers=sse.STREAM_HEADERS)


async def _job_events(job: Job, heartbeat: float, stopping: asyncio.Event) -> AsyncIterator[bytes]:
    yield sse.PING
    try:
        async for item in sse.until(stopping, job.follow(heartbeat)):
            yield sse.PING if item is None else sse.event(*item)
    except sse.Stopping:
        yield sse.event("stopping", {"message": sse.STOPPING})


@router.get("/documents")
def documents(request: Request, index: str | None = None) -> dict[str, Any]:
    docs = _state(request).documents(index)
    return {"documents": [d.to_dict() for d in docs]}


@router.delete("/documents/{doc_id}", status_code=204)
async def delete_document(doc_id: str, request: Request, index: str | None = None) -> Response:
    """Remove a document's chunks; an uploaded document's stored file goes too."""
    state = _state(request)
    _check_id(doc_id)
    name = (await run_in_threadpool(state.engine, index)).index_name
    # Through the index's job queue: a delete waits for earlier uploads instead of failing on the lock.
    await _jobs(request).run(name, lambda: state.remove_document(name, doc_id))
    return Response(status_code=204)


@router.get("/documents/{doc_id}/file", response_model=None)
def document_file(doc_id: str, request: Request, index: str | None = None) -> FileResponse:
    """The original file, inline (so `#page=N` works in a PDF viewer); only files the index holds."""
    _check_id(doc_id)
    state = _state(request)
    path = state.document_file(index, doc_id)
    suffix = path.suffix.lower()
    if suffix in _DOWNLOAD:
        return FileResponse(path, media_type=_DOWNLOAD[suffix], filename=path.name)
    # Everything else with text in it (HTML, Markdown, code, e-mail) is shown as plain text, never
    # rendered: a document must not run script in our origin.
    media = _INLINE.get(suffix, "text/plain; charset=utf-8")
    response = FileResponse(path, media_type=media, filename=path.name, content_disposition_type="inline")
    if suffix not in _INLINE:
        response.headers["Content-Security-Policy"] = "sandbox; default-src 'none'; frame-ancestors 'none'"
    return response


@router.get("/documents/{doc_id}/text")
def document_text(
    doc_id: str, request: Request, index: str | None = None, page: Annotated[int | None, Query(ge=1)] = None
) -> dict[str, Any]:
    """The loader's text of a page: citation `start`/`end` offsets index into it."""
    _check_id(doc_id)
    return _state(request).document_text(index, doc_id, page)


def _check_id(doc_id: str) -> None:
    if not _DOC_ID.match(doc_id):
        raise NotFound(f"no document '{doc_id}'")
