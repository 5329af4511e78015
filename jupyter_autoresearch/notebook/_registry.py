"""The sessions this kernel has started, by name."""

from __future__ import annotations

import threading

from ..engine._session import Session
from ..protocol._errors import SessionError

__all__ = ["current", "register", "sessions"]

_SESSIONS: dict[str, Session] = {}
_ORDER: list[str] = []
_LOCK = threading.Lock()


def register(session: Session) -> None:
    with _LOCK:
        _SESSIONS[session.name] = session
        if session.name in _ORDER:
            _ORDER.remove(session.name)
        _ORDER.append(session.name)


def sessions() -> dict[str, Session]:
    """The sessions started in this kernel, by name, oldest first.

    Example:
        >>> import jupyter_autoresearch as ar
        >>> ar.sessions()  # doctest: +SKIP
        {'marketing_budget': <Session 'marketing_budget': running, 4 runs, best run 2: 110.127>}
    """
    with _LOCK:
        return {name: _SESSIONS[name] for name in _ORDER}


def current(name: str | None = None) -> Session:
    """The named session, or the most recently started one.

    Raises:
        SessionError: there is no such session.
    """
    with _LOCK:
        if name is not None:
            if name not in _SESSIONS:
                known = ", ".join(_ORDER) or "none yet"
                raise SessionError(f"no session named {name!r} in this kernel (sessions: {known})")
            return _SESSIONS[name]
        if not _ORDER:
            raise SessionError("no autoresearch session in this kernel yet; run a %%autoresearch cell first")
        return _SESSIONS[_ORDER[-1]]
