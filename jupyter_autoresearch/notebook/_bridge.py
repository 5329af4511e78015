"""The bridge to the JupyterLab extension: the kernel side of ``labextension/src/comm.ts``.

Messages, both ways (``tests/files/bridge_messages.json`` holds one of each, checked by
pytest and jest)::

    kernel -> page   hello            on comm open; every page that has the extension attaches
                     insert, mark,    cell edits, addressed to one page and acknowledged by it
                     replace, open
                     state            the best run, for the command palette (all pages)
                     result           the outcome of an export the page asked for
    page -> kernel   attach           "this page is live": sent on comm open, when a reloaded
                                      page finds the comm again, and when a page becomes visible
                     ack              the outcome of one edit (after the notebook is saved)
                     export           an export from the command palette

Delivery is acknowledged: an edit stays pending until the page that made it says so. An
edit sent before any page attached, or to a page that went away (a reload, a closed
notebook), is sent again to the next page that attaches; the extension applies each edit
once however often it arrives (a run's cell is found by its metadata). The kernel opens
the comm only for frontends that send cell ids with their execute requests (JupyterLab,
Notebook 7), so headless runners (nbclient, papermill, nbconvert) never see it.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypedDict, cast

__all__ = [
    "COMM_TARGET",
    "Ack",
    "Bridge",
    "Delivery",
    "bridge",
    "current_cell_id",
]

COMM_TARGET = "jupyter-autoresearch"
log = logging.getLogger("jupyter_autoresearch")


# -- kernel -> page ----------------------------------------------------------------------
class Hello(TypedDict):
    type: Literal["hello"]


class Insert(TypedDict):
    type: Literal["insert"]
    request: str
    page: str
    anchor_cell_id: str
    session: str
    run: int
    source: str
    metadata: dict[str, Any]


class Mark(TypedDict):
    type: Literal["mark"]
    request: str
    page: str
    session: str
    run: int
    note: str


class Replace(TypedDict):
    type: Literal["replace"]
    request: str
    page: str
    anchor_cell_id: str
    source: str


class Open(TypedDict):
    type: Literal["open"]
    request: str
    page: str
    path: str


class BestRun(TypedDict):
    run: int
    metric: float | None


class State(TypedDict):
    type: Literal["state"]
    session: str
    best: BestRun | None


class Result(TypedDict):
    type: Literal["result"]
    request: str
    page: str
    ok: bool
    message: str


Edit = Insert | Mark | Replace | Open


# -- page -> kernel ----------------------------------------------------------------------
class Attach(TypedDict):
    type: Literal["attach"]
    page: str
    version: str


class Ack(TypedDict, total=False):
    """The page's answer to one edit: ``ok``, plus ``index`` and ``created`` (insert),
    ``count`` (mark) or ``error``."""

    type: Literal["ack"]
    request: str
    ok: bool
    index: int
    created: bool
    count: int
    error: str


class ExportRequest(TypedDict):
    type: Literal["export"]
    request: str
    page: str
    to: str
    arg: str


PageMessage = Attach | Ack | ExportRequest


def parse_page_message(data: object) -> PageMessage | None:
    """The typed message a page sent, or None for anything malformed."""
    if not isinstance(data, Mapping):
        return None
    kind = data.get("type")
    text = {k: isinstance(data.get(k), str) for k in ("page", "version", "request", "to", "arg")}
    if kind == "attach" and text["page"] and text["version"]:
        return Attach(type="attach", page=data["page"], version=data["version"])
    if kind == "ack" and text["request"] and isinstance(data.get("ok"), bool):
        return cast(Ack, dict(data))
    if kind == "export" and text["request"] and text["page"] and text["to"] and text["arg"]:
        return ExportRequest(type="export", request=data["request"], page=data["page"], to=data["to"], arg=data["arg"])
    return None


# -- deliveries --------------------------------------------------------------------------
Status = Literal["queued", "sent", "done", "failed"]


@dataclass
class Delivery:
    """One edit on its way to a page.

    ``status``: ``queued`` (no page attached yet), ``sent`` (awaiting the page's ack),
    ``done``, or ``failed`` (the page answered with an error; sent again when a page
    attaches). ``retry`` is False for one-shot edits (opening a document), which are
    dropped instead of queued.
    """

    message: Edit
    retry: bool = True
    status: Status = "queued"
    page: str | None = None
    error: str | None = None
    ack: Ack | None = None
    _listeners: list[Callable[[Delivery], None]] = field(default_factory=list, repr=False)

    @property
    def request(self) -> str:
        return self.message["request"]

    @property
    def settled(self) -> bool:
        """Done, or failed: the page answered."""
        return self.status in ("done", "failed")

    def then(self, listener: Callable[[Delivery], None]) -> Delivery:
        """Call ``listener(self)`` each time the page answers (at once if it already has)."""
        self._listeners.append(listener)
        if self.settled:
            listener(self)
        return self


class Transport(Protocol):
    """The part of a ``comm.base_comm.BaseComm`` the bridge uses."""

    def send(self, data: dict[str, Any]) -> None: ...
    def on_msg(self, callback: Callable[[dict[str, Any]], None]) -> None: ...
    def on_close(self, callback: Callable[[dict[str, Any]], None]) -> None: ...


def _open_comm(hello: Hello) -> Transport | None:
    import comm

    opened = comm.create_comm(target_name=COMM_TARGET, data=hello)
    return None if type(opened).__name__ == "DummyComm" else cast(Transport, opened)


class Bridge:
    """The kernel's end of the comm: typed edits out, acks and exports in.

    Args:
        open_comm: opens the comm to the frontend with the given ``hello`` as its data
            (``comm.create_comm`` by default), returning None when there is no frontend.
    """

    def __init__(self, open_comm: Callable[[Hello], Transport | None] = _open_comm) -> None:
        self._open_comm = open_comm
        self._comm: Transport | None = None
        self._refused = False
        self._wanted = False
        self._pages: list[str] = []  # attached pages, the live one last
        self._deliveries: dict[str, Delivery] = {}  # not yet done, in the order sent
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self.version: str | None = None
        self.on_export: Callable[[str, str, Callable[[bool, str], None]], None] | None = None

    # -- state ---------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        """A comm is open (the frontend may have the extension)."""
        return self._comm is not None

    @property
    def page(self) -> str | None:
        """The live page: the one that attached last."""
        with self._lock:
            return self._pages[-1] if self._pages else None

    @property
    def refused(self) -> bool:
        """The frontend closed the comm before any page attached: no extension there."""
        return self._refused

    def pending(self) -> list[Delivery]:
        """Edits no page has confirmed yet, in the order they were made."""
        with self._lock:
            return list(self._deliveries.values())

    def connect(self) -> bool:
        """Open the comm if it is not open; False when there is no frontend."""
        with self._lock:
            self._wanted = True
            if self._comm is not None:
                return True
            try:
                opened = self._open_comm(Hello(type="hello"))
            except Exception as err:
                log.debug("no comm to the frontend: %s", err)
                opened = None
            if opened is None:
                return False
            self._comm, self._refused = opened, False
        opened.on_msg(lambda message: self.receive(message.get("content", {}).get("data")))
        opened.on_close(lambda message: self._closed(opened))
        return True

    # -- edits ---------------------------------------------------------------------------
    def insert(self, anchor_cell_id: str, session: str, run: int, source: str, metadata: dict[str, Any]) -> Delivery:
        """Insert a run's cell below the anchor, in run order (once, however often sent)."""
        return self._deliver(
            Insert(
                type="insert",
                request=self._request(),
                page="",
                anchor_cell_id=anchor_cell_id,
                session=session,
                run=run,
                source=source,
                metadata=metadata,
            )
        )

    def mark(self, session: str, run: int, note: str) -> Delivery:
        """Mark every cell of the run infeasible, wherever it is in the kernel's notebooks."""
        return self._deliver(Mark(type="mark", request=self._request(), page="", session=session, run=run, note=note))

    def replace(self, anchor_cell_id: str, source: str) -> Delivery:
        """Replace the anchor cell's source (one undo step in the notebook)."""
        return self._deliver(
            Replace(type="replace", request=self._request(), page="", anchor_cell_id=anchor_cell_id, source=source)
        )

    def open(self, path: str) -> Delivery:
        """Open a document, the path relative to the kernel's notebook; never queued."""
        return self._deliver(Open(type="open", request=self._request(), page="", path=path), retry=False)

    def state(self, session: str, best: BestRun | None) -> None:
        """Tell every page the session's best run (the palette shows it)."""
        self._send(State(type="state", session=session, best=best))

    # -- transport -----------------------------------------------------------------------
    def _request(self) -> str:
        return f"r{next(self._ids)}"

    def _deliver(self, message: Edit, *, retry: bool = True) -> Delivery:
        if self._comm is None and self._wanted and not self._refused:
            self.connect()  # closed by a frontend after pages had attached: open it again
        delivery = Delivery(message, retry=retry)
        with self._lock:
            self._deliveries[delivery.request] = delivery
            page = self.page
        if page is not None:
            self._dispatch(delivery, page)
        elif not retry:
            self._settle(delivery, None, "no notebook page is connected")
        return delivery

    def _dispatch(self, delivery: Delivery, page: str) -> None:
        delivery.message["page"] = page
        delivery.page, delivery.status = page, "sent"
        self._send(delivery.message)

    def _send(self, message: Mapping[str, Any]) -> None:
        with self._lock:
            transport = self._comm
        if transport is None:
            return
        try:
            transport.send(dict(message))
        except Exception as err:  # a closed socket: the edit stays pending
            log.debug("comm send failed: %s", err)

    def receive(self, data: object) -> None:
        """Handle one message from a page."""
        message = parse_page_message(data)
        if message is None:
            log.debug("ignored a malformed message from the frontend: %r", data)
        elif message["type"] == "attach":
            self._attach(message)
        elif message["type"] == "ack":
            with self._lock:
                delivery = self._deliveries.get(message["request"])
            if delivery is not None:
                self._settle(delivery, message, None if message["ok"] else message.get("error", "failed"))
        else:
            self._export(message)

    def _attach(self, message: Attach) -> None:
        with self._lock:
            page = message["page"]
            if page in self._pages:
                self._pages.remove(page)
            self._pages.append(page)
            self.version = message["version"]
            resend = [d for d in self._deliveries.values() if d.retry]
            dropped = [d for d in self._deliveries.values() if not d.retry and d.page != page]
        for delivery in dropped:
            self._settle(delivery, None, "the notebook page went away")
        for delivery in resend:
            self._dispatch(delivery, page)

    def _settle(self, delivery: Delivery, ack: Ack | None, error: str | None) -> None:
        with self._lock:
            delivery.ack, delivery.error = ack, error
            delivery.status = "failed" if error else "done"
            if error is None or not delivery.retry:
                self._deliveries.pop(delivery.request, None)
            listeners = list(delivery._listeners)
        for listener in listeners:
            try:
                listener(delivery)
            except Exception:
                log.exception("a delivery listener failed")

    def _export(self, message: ExportRequest) -> None:
        def reply(ok: bool, text: str) -> None:
            self._send(Result(type="result", request=message["request"], page=message["page"], ok=ok, message=text))

        if self.on_export is None:
            reply(False, "no autoresearch session in this kernel yet; run a %%autoresearch cell first")
            return
        try:
            self.on_export(message["to"], message["arg"], reply)
        except Exception as err:
            reply(False, str(err))

    def _closed(self, transport: Transport) -> None:
        with self._lock:
            if self._comm is not transport:
                return
            self._comm = None
            self._refused = not self._pages
            self._pages.clear()
            for delivery in self._deliveries.values():
                delivery.status, delivery.page = "queued", None


_BRIDGE: Bridge | None = None
_BRIDGE_LOCK = threading.Lock()


def bridge() -> Bridge:
    """The kernel's bridge (one per kernel); ``Bridge.connect`` opens its comm."""
    global _BRIDGE
    with _BRIDGE_LOCK:
        if _BRIDGE is None:
            _BRIDGE = Bridge()
        return _BRIDGE


def current_cell_id() -> str | None:
    """The id of the cell being executed, which JupyterLab sends with each execute request.

    None under frontends that send no cell ids (nbclient, papermill, nbconvert), and
    outside a kernel.
    """
    try:
        from IPython.core.getipython import get_ipython

        kernel = getattr(get_ipython(), "kernel", None)
        if kernel is None:
            return None
        parent = kernel.get_parent("shell") if hasattr(kernel, "get_parent") else kernel._parent_header
        cell_id = (parent or {}).get("metadata", {}).get("cellId")
        return cell_id if isinstance(cell_id, str) and cell_id else None
    except Exception:
        return None
