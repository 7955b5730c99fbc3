"""A threaded TCP relay for simulating database outages in tests.

`TcpRelay(target_port)` listens on a free 127.0.0.1 port and forwards every connection to
127.0.0.1:target_port. `cut()` resets every open connection and makes new ones fail at once
(accepted and immediately reset, which a client sees like a refused or lost connection);
`stall()` keeps connections open but holds every byte, as a network partition does (a client
sees its requests time out, not fail); `restore()` lets connections and held bytes through again.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from types import TracebackType


def _reset(sock: socket.socket) -> None:
    # SO_LINGER 0 makes the last close send RST. shutdown() comes first because a bare close()
    # neither wakes a pump thread blocked in recv() on this socket nor tears the connection down.
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


class TcpRelay:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._cut = False
        self._flowing = threading.Event()  # cleared while stalled: pumps hold what they read
        self._flowing.set()
        self._stopped = False
        self.accepted = 0
        self._thread = threading.Thread(target=self._accept_loop, name="tcp-relay", daemon=True)
        self._thread.start()

    def __enter__(self) -> TcpRelay:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def cut(self) -> None:
        """Reset every relayed connection and refuse new ones until restore()."""
        with self._lock:
            self._cut = True
            doomed = list(self._sockets)
            self._sockets.clear()
        for sock in doomed:
            _reset(sock)

    def stall(self) -> None:
        """Hold every byte in both directions (open and new connections) until restore()."""
        self._flowing.clear()

    def restore(self) -> None:
        with self._lock:
            self._cut = False
        self._flowing.set()

    def close(self) -> None:
        self._stopped = True
        self._flowing.set()
        self.cut()
        with contextlib.suppress(OSError):
            self._listener.close()
        self._thread.join(timeout=2)

    def _accept_loop(self) -> None:
        self._listener.settimeout(0.1)
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            with self._lock:
                cut = self._cut
            if cut:
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=2)
            except OSError:
                _reset(client)
                continue
            client.settimeout(None)
            upstream.settimeout(None)
            with self._lock:
                if self._cut:  # cut() ran while we were connecting
                    _reset(client)
                    _reset(upstream)
                    continue
                self._sockets.update((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                self._flowing.wait()
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._sockets.discard(src)
                self._sockets.discard(dst)
            # Either side hanging up ends the relayed connection; the other pump then fails out.
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()
