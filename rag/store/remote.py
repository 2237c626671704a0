"""What machines sharing an index on a Chroma server agree on: who writes, and what changed.

**The writer lease.**  Chroma has no compare-and-swap, but creating a collection whose
name exists fails, on the server, atomically.  A lease is therefore a numbered collection
``raglease-INDEX-E``: whoever creates epoch ``E + 1`` holds the lease, and may do so only
when epoch ``E`` is released or expired.  Its metadata holds the owner (``host pid N``),
the expiry (wall-clock seconds, renewed every third of the TTL by a background thread)
and whether it was released.  A writer that crashed stops renewing, so its lease expires
after the TTL; a writer whose lease was taken over notices before its next commit
(``LeaseLostError``) and stops.

**The change log.**  The collection ``ragctl-INDEX`` holds, per generation, the chunk ids
a commit added and removed; its metadata holds the head generation.  Only the lease holder
writes, one generation per commit, so generations are consecutive integers and none can be
lost: a writer first catches up to the head, then commits ``head + 1``.  (The previous
scheme stamped a random generation per ingest, and a machine that stamped last believed it
had seen a stamp it never read: a lost update.)  A reader applies the generations after
the one it has seen, so catching up costs what changed; when the log was trimmed past it,
it rebuilds from the collection.

Commit order, so that a crash at any point is repaired by the next writer:
vectors are written tagged ``rag_gen = head + 1`` -> the log entry is written -> the head
moves -> removed ids are deleted.  ``settle`` (run by each new lease holder) deletes
vectors tagged beyond the head (a crashed writer's uncommitted chunks) and re-deletes the
head generation's removed ids.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from rag.errors import IndexLockedError, RagError, StoreError

#: Metadata key carrying the generation that wrote a chunk.
GEN_KEY = "rag_gen"
# Ids per log record: a record is one Chroma document, kept well under a megabyte.
_PART = 5000


class LeaseLostError(RagError):
    """Another writer took over this index's lease (this one stalled past its TTL)."""

    def __init__(self, index: str, holder: str) -> None:
        super().__init__(
            f"index '{index}': the write lease expired and {holder} took it over; "
            "nothing after the last commit was kept, run the ingest again"
        )


def lease_prefix(index: str) -> str:
    return f"raglease-{index}-"


def log_name(index: str) -> str:
    return f"ragctl-{index}"


@dataclass(frozen=True)
class LeaseState:
    """One epoch of the lease, as the server holds it."""

    epoch: int
    owner: str
    token: str
    expires: float
    released: bool

    def free(self, now: float) -> bool:
        return self.released or self.expires <= now


def _describe(state: LeaseState, now: float) -> str:
    return f"{state.owner} (lease expires in {max(0.0, state.expires - now):.0f} s)"


class Lease:
    """The writer lease of one index on a Chroma server (see the module docstring)."""

    #: Seconds between checks while waiting for another writer.
    poll = 0.25

    def __init__(self, client: Any, index: str, ttl: float, owner: str | None = None) -> None:
        self._client = client
        self.index = index
        self.ttl = ttl
        self.owner = owner or f"{socket.gethostname()} pid {os.getpid()}"
        self.token = uuid.uuid4().hex
        self.epoch: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lost: str | None = None

    # --- reading --------------------------------------------------------------------------

    def states(self) -> list[LeaseState]:
        """Every epoch on the server, oldest first."""
        prefix = lease_prefix(self.index)
        found = []
        for collection in list_collections(self._client):
            name = collection.name
            if name.startswith(prefix) and name[len(prefix) :].isdigit():
                meta = collection.metadata or {}
                found.append(
                    LeaseState(
                        epoch=int(name[len(prefix) :]),
                        owner=str(meta.get("owner", "?")),
                        token=str(meta.get("token", "")),
                        expires=float(meta.get("expires", 0.0)),
                        released=bool(meta.get("released", False)),
                    )
                )
        return sorted(found, key=lambda s: s.epoch)

    def current(self) -> LeaseState | None:
        states = self.states()
        return states[-1] if states else None

    def holder(self) -> str | None:
        """Who holds the lease now, or None when it is free."""
        state = self.current()
        now = time.time()
        return _describe(state, now) if state is not None and not state.free(now) else None

    # --- holding --------------------------------------------------------------------------

    def acquire(self, timeout: float) -> None:
        """Take the lease, waiting up to ``timeout`` seconds for the holder to finish or expire."""
        started = time.monotonic()
        while True:
            state = self.current()
            now = time.time()
            if state is None or state.free(now):
                epoch = (state.epoch if state else 0) + 1
                if self._create(epoch, now):
                    self.epoch = epoch
                    if state is not None:
                        # The previous epoch is done with; keep the server tidy.
                        _call(self._client.delete_collection, f"{lease_prefix(self.index)}{state.epoch}", quiet=True)
                    self._start_renewing()
                    return
                continue  # someone else created it first: look again
            waited = time.monotonic() - started
            if waited >= timeout:
                raise IndexLockedError(self.index, waited, holder=_describe(state, now))
            time.sleep(min(self.poll, max(0.0, timeout - waited)))

    def _create(self, epoch: int, now: float) -> bool:
        metadata = {"owner": self.owner, "token": self.token, "expires": now + self.ttl, "released": False}
        try:
            self._client.create_collection(f"{lease_prefix(self.index)}{epoch}", metadata=metadata)
        except Exception as exc:
            if "already exists" in str(exc).lower():
                return False
            raise StoreError(f"Chroma: cannot take the write lease of '{self.index}': {_short(exc)}") from exc
        return True

    def _mine(self) -> Any:
        assert self.epoch is not None
        return self._client.get_collection(f"{lease_prefix(self.index)}{self.epoch}")

    def renew(self) -> None:
        """Push the expiry one TTL ahead; raises ``LeaseLostError`` if the lease was taken over."""
        self.check()
        collection = self._mine()
        meta = dict(collection.metadata or {})
        meta["expires"] = time.time() + self.ttl
        collection.modify(metadata=meta)

    def check(self) -> None:
        """Raise ``LeaseLostError`` unless this writer still holds the lease."""
        if self._lost is not None:
            raise LeaseLostError(self.index, self._lost)
        state = self.current()
        if self.epoch is None or state is None or state.epoch != self.epoch or state.token != self.token:
            self._lost = state.owner if state is not None else "another writer"
            raise LeaseLostError(self.index, self._lost)

    def _start_renewing(self) -> None:
        self._stop.clear()
        self._lost = None

        def run() -> None:
            while not self._stop.wait(self.ttl / 3):
                try:
                    self.renew()
                except LeaseLostError:
                    return
                except Exception:  # a network blip: try again next period
                    continue

        self._thread = threading.Thread(target=run, name=f"lease-{self.index}", daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Give the lease up (a no-op if it was lost)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self.epoch is None:
            return
        try:
            self.check()
            collection = self._mine()
            collection.modify(metadata={**(collection.metadata or {}), "released": True})
        except (LeaseLostError, Exception):
            pass
        self.epoch = None


@dataclass
class Changes:
    """What a range of generations did, net: the ids to remove locally, then the ids to add."""

    since: int
    head: int
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    records: int = 0  # log records read


class ChangeLog:
    """The per-generation change log of one index on a Chroma server."""

    #: Generations kept; older ones are trimmed by the writer.
    keep = 10_000

    def __init__(self, client: Any, index: str) -> None:
        self._client = client
        self.index = index
        self._collection: Any = None

    def _get(self) -> Any:
        if self._collection is None:
            # A log record is a document; Chroma wants a vector beside it, so each gets [1.0].
            self._collection = _call(
                self._client.get_or_create_collection, log_name(self.index), embedding_function=None
            )
        return self._collection

    def exists(self) -> bool:
        try:
            self._client.get_collection(log_name(self.index))
        except Exception:
            return False
        return True

    def state(self) -> tuple[int, int]:
        """(head generation, last trimmed generation), as the server has them now."""
        # A collection object keeps the metadata it was fetched with: fetch it again.
        self._collection = None
        meta = self._get().metadata or {}
        return int(meta.get("head", 0)), int(meta.get("trimmed", 0))

    @property
    def head(self) -> int:
        return self.state()[0]

    def _set_state(self, head: int, trimmed: int) -> None:
        _call(self._get().modify, metadata={"head": head, "trimmed": trimmed})

    def commit(self, generation: int, added: Sequence[str], removed: Sequence[str]) -> None:
        """Record ``generation`` and make it the head (the lease holder only)."""
        head, trimmed = self.state()
        if generation != head + 1:
            raise StoreError(f"index '{self.index}': commit of generation {generation} on head {head}")
        collection = self._get()
        # Records of an earlier attempt at this generation (its writer died) are replaced.
        _call(collection.delete, where={"gen": generation})
        ids, docs, metas = [], [], []
        parts = _parts(list(added), list(removed))
        for part, (a, r) in enumerate(parts):
            ids.append(f"g{generation:012d}-{part:05d}")
            docs.append(json.dumps({"added": a, "removed": r}))
            metas.append({"gen": generation, "part": part})
        _call(collection.upsert, ids=ids, documents=docs, metadatas=metas, embeddings=[[1.0]] * len(ids))
        if generation - trimmed > self.keep + self.keep // 10:
            trimmed = generation - self.keep
            _call(collection.delete, where={"gen": {"$lte": trimmed}})
        self._set_state(generation, trimmed)

    def removed_at(self, generation: int) -> list[str]:
        if generation <= 0:
            return []
        got = _call(self._get().get, where={"gen": generation}, include=["documents"])
        return [i for doc in got["documents"] for i in json.loads(doc)["removed"]]

    def changes(self, since: int, head: int | None = None) -> Changes | None:
        """Net changes in generations ``since + 1 .. head``; None when the log no longer has them."""
        current, trimmed = self.state()
        head = current if head is None else head
        if since < trimmed:
            return None
        changes = Changes(since, head)
        if since >= head:
            return changes
        got = _call(
            self._get().get,
            where={"$and": [{"gen": {"$gt": since}}, {"gen": {"$lte": head}}]},
            include=["documents", "metadatas"],
        )
        records = sorted(
            zip(got["metadatas"], got["documents"], strict=True), key=lambda r: (int(r[0]["gen"]), int(r[0]["part"]))
        )
        seen = {int(m["gen"]) for m, _ in records}
        if seen != set(range(since + 1, head + 1)):
            return None  # a generation is missing (trimmed meanwhile): rebuild
        final: dict[str, bool] = {}
        for _, doc in records:
            body = json.loads(doc)
            # Within a generation removals happen before additions (a file's old chunks go,
            # its new ones come); across generations the later one wins.
            for i in body["removed"]:
                final[i] = False
            for i in body["added"]:
                final[i] = True
        changes.added = [i for i, alive in final.items() if alive]
        changes.removed = [i for i, alive in final.items() if not alive]
        changes.records = len(records)
        return changes

    def drop(self) -> None:
        _call(self._client.delete_collection, log_name(self.index), quiet=True)
        self._collection = None


def drop_leases(client: Any, index: str) -> None:
    prefix = lease_prefix(index)
    for collection in list_collections(client):
        if collection.name.startswith(prefix):
            _call(client.delete_collection, collection.name, quiet=True)


def _parts(added: list[str], removed: list[str]) -> list[tuple[list[str], list[str]]]:
    """Split a generation into records of at most ``_PART`` ids, removals first; at least one."""
    tagged = [(False, i) for i in removed] + [(True, i) for i in added]
    parts = []
    for start in range(0, max(len(tagged), 1), _PART):
        part = tagged[start : start + _PART]
        parts.append(([i for alive, i in part if alive], [i for alive, i in part if not alive]))
    return parts


def list_collections(client: Any, page: int = 1000) -> Iterator[Any]:
    """Every collection on a Chroma, fetched a page at a time."""
    offset = 0
    while True:
        got = _call(client.list_collections, limit=page, offset=offset)
        yield from got
        if len(got) < page:
            return
        offset += page


def _call(fn: Callable[..., Any], *args: Any, quiet: bool = False, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        if quiet:
            return None
        raise StoreError(f"Chroma: {_short(exc)}") from exc


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
