"""The comm to the JupyterLab extension: cells come back into the notebook through it.

The kernel opens one comm per kernel (target ``jupyter-autoresearch``); the extension
finds the anchor cell by the ``cellId`` JupyterLab sends with each execute request and
edits the notebook model, so nothing races with the cell the user is working in.
"""

from __future__ import annotations

import itertools
import logging
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["COMM_TARGET", "FrontendBridge", "bridge", "current_cell_id", "extension_installed"]

COMM_TARGET = "jupyter-autoresearch"
log = logging.getLogger("jupyter_autoresearch")
_ids = itertools.count(1)


class FrontendBridge:
    """Sends cell edits to the extension and receives its acks and export requests.

    ``available`` is True once the extension answered, False when the frontend refused
    the comm (no extension) or there is no frontend, None while unknown.
    """

    def __init__(self) -> None:
        self.available: bool | None = None
        self.version: str | None = None
        self.on_export: Callable[[str, str], str] | None = None
        self._callbacks: dict[str, Callable[[dict[str, Any]], None]] = {}
        self._lock = threading.Lock()
        self._comm: Any = None
        self._open()

    def _open(self) -> None:
        try:
            import comm

            request = self._request_id()
            self._comm = comm.create_comm(target_name=COMM_TARGET, data={"type": "hello", "request": request})
        except Exception as err:
            log.debug("no comm to the frontend: %s", err)
            self.available = False
            return
        if type(self._comm).__name__ == "DummyComm":
            self.available = False  # not in a kernel: nobody to talk to
            return
        self._comm.on_msg(self._receive)
        self._comm.on_close(self._closed)

    @staticmethod
    def _request_id() -> str:
        return f"r{next(_ids)}"

    def _receive(self, message: dict[str, Any]) -> None:
        data = message.get("content", {}).get("data", {}) or {}
        kind = data.get("type")
        if kind == "ack":
            with self._lock:
                self.available = True
                self.version = data.get("version", self.version)
                callback = self._callbacks.pop(str(data.get("request")), None)
            if callback is not None:
                callback(data)
        elif kind == "export" and self.on_export is not None:
            try:
                text = self.on_export(str(data.get("to", "")), str(data.get("arg") or ""))
                self.send({"type": "result", "ok": True, "message": text})
            except Exception as err:
                self.send({"type": "result", "ok": False, "message": str(err)})

    def _closed(self, message: dict[str, Any]) -> None:
        self.available = False if self.available is None else self.available
        self._comm = None

    def send(self, payload: dict[str, Any], on_ack: Callable[[dict[str, Any]], None] | None = None) -> bool:
        """Send a message; False when there is no frontend to send it to."""
        if self._comm is None or self.available is False:
            return False
        request = self._request_id()
        if on_ack is not None:
            with self._lock:
                self._callbacks[request] = on_ack
        try:
            self._comm.send({**payload, "request": request})
        except Exception as err:
            log.debug("comm send failed: %s", err)
            return False
        return True


_BRIDGE: FrontendBridge | None = None


def bridge() -> FrontendBridge:
    """The kernel's bridge, opened on first use (``%load_ext`` opens it early)."""
    global _BRIDGE
    if _BRIDGE is None or (_BRIDGE._comm is None and _BRIDGE.available is not False):
        _BRIDGE = FrontendBridge()
    return _BRIDGE


def current_cell_id() -> str | None:
    """The id of the cell being executed, from the execute request's metadata."""
    try:
        from IPython.core.getipython import get_ipython

        kernel = getattr(get_ipython(), "kernel", None)
        if kernel is None:
            return None
        parent = kernel.get_parent("shell") if hasattr(kernel, "get_parent") else kernel._parent_header
        return (parent or {}).get("metadata", {}).get("cellId")
    except Exception:
        return None


def extension_installed() -> bool:
    """Whether this environment's JupyterLab has our extension and a server started the kernel."""
    installed = (Path(sys.prefix) / "share" / "jupyter" / "labextensions" / "jupyter-autoresearch").is_dir()
    return installed and "JPY_SESSION_NAME" in os.environ
