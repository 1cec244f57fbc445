"""A loopback TCP proxy that can hold back one answer: a link that stalls mid-response.

The sandbox can delay or drop a response, but it cannot leave one *half-delivered* for as long
as a test needs -- the moment a crash test wants to kill the client in (a submit the server
accepted but whose answer never arrived; a download whose body is half-way through). This proxy
forwards bytes unchanged between the client and the sandbox; once armed with :meth:`stall`, it
forwards the answer to the next matching request only up to a point, then holds it (and the
connection) until :meth:`release` or the proxy closes. :attr:`stalled` is set at that moment.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from types import TracebackType

__all__ = ["DOWNLOAD", "SUBMIT", "StallingProxy", "address"]

SUBMIT = r"^POST /v2/batch/marketmatch/rank/jobs\?"
"""Request line of a batch submit (a pattern for :meth:`StallingProxy.stall`)."""
DOWNLOAD = r"^POST /v2/batch/marketmatch/rank/jobs/[^/?]+/download\?"
"""Request line of a result download."""
_CHUNK = 65536


def address(base_url: str) -> tuple[str, int]:
    """Return the ``(host, port)`` of an ``http://host:port`` base URL."""
    host, port = base_url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


class _Trap:
    """What to hold back: the answer to the next request whose request line matches."""

    def __init__(self, request: re.Pattern[bytes], body_bytes: int | None) -> None:
        self.request = request
        self.body_bytes = body_bytes


class StallingProxy:
    """Forward 127.0.0.1:<port> to ``upstream``; optionally stall one answer part-way.

    Parameters
    ----------
    upstream
        The ``(host, port)`` of the real server.

    Use it as a context manager; :attr:`base_url` is where clients connect.
    """

    def __init__(self, upstream: tuple[str, int]) -> None:
        self._upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._trap: _Trap | None = None
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._released = threading.Event()  # set by release() and by close()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self.stalled = threading.Event()
        """Set once an answer is being held back."""
        self.base_url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._start(self._accept)

    def stall(self, request: str, *, body_bytes: int | None = None) -> None:
        """Hold back the answer to the next request whose request line matches ``request``.

        ``body_bytes=None`` holds the whole answer (the server answered, the client hears
        nothing); an integer forwards the headers and that many bytes of the body first.
        """
        with self._lock:
            self._trap = _Trap(re.compile(request.encode()), body_bytes)

    def release(self) -> None:
        """Deliver the rest of the held answer (and forward that connection normally again)."""
        self._released.set()

    def __enter__(self) -> StallingProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop accepting, close every connection, and join the pump threads."""
        self._closed.set()
        self._released.set()
        with self._lock:
            sockets = [self._listener, *self._sockets]
        for sock in sockets:  # shutdown() wakes a thread blocked in accept() or recv()
            _shutdown(sock, socket.SHUT_RDWR)
            sock.close()
        for thread in self._threads:
            thread.join(5)
            assert not thread.is_alive(), "a proxy thread did not stop"

    # -- internals --------------------------------------------------------------------------

    def _start(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self._upstream)
            with self._lock:
                self._sockets += [client, server]
            armed: list[_Trap] = []  # the trap this connection sprang, if any
            self._start(self._requests, client, server, armed)
            self._start(self._answers, server, client, armed)

    def _requests(self, client: socket.socket, server: socket.socket, armed: list[_Trap]) -> None:
        """Client -> server: forward, and spring the trap on a matching request line."""
        try:
            while data := client.recv(_CHUNK):
                with self._lock:
                    if self._trap is not None and self._trap.request.search(data):
                        armed.append(self._trap)
                        self._trap = None
                server.sendall(data)
        except OSError:
            pass
        finally:
            _shutdown(server)

    def _answers(self, server: socket.socket, client: socket.socket, armed: list[_Trap]) -> None:
        """Server -> client: forward; for a sprung trap, stop part-way and hold."""
        budget: int | None = None  # bytes still to forward before holding (trap sprung)
        head = b""
        try:
            while data := server.recv(_CHUNK):
                if armed and budget is None:
                    trap = armed[0]
                    head += data
                    end = head.find(b"\r\n\r\n")
                    if trap.body_bytes is None:
                        budget = 0
                    elif end < 0:
                        continue  # wait for the whole header block
                    else:
                        budget = end + 4 + trap.body_bytes
                    data, head = head, b""
                if budget is not None:
                    client.sendall(data[:budget])
                    held, budget = data[budget:], max(0, budget - len(data))
                    if budget == 0:
                        self.stalled.set()
                        self._released.wait()
                        if self._closed.is_set():
                            return
                        client.sendall(held)
                        armed.clear()
                        budget = None
                    continue
                client.sendall(data)
        except OSError:
            pass
        finally:
            _shutdown(client)


def _shutdown(sock: socket.socket, how: int = socket.SHUT_WR) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(how)
