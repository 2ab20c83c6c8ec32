"""A local HTTP server that answers each request with a callback: video streams that drop,
stall, refuse or run in real time, for the camera tests and benchmarks/soak_runtime.py."""

from __future__ import annotations

import contextlib
import http.server
import socketserver
import threading
import time
from collections.abc import Callable, Iterator, Sequence

Respond = Callable[[int, http.server.BaseHTTPRequestHandler], None]


def send_video(handler: http.server.BaseHTTPRequestHandler, whole: bytes, upto: int | None = None) -> None:
    """Headers for all of `whole`, then only its first `upto` bytes (a connection that drops)."""
    handler.send_response(200)
    handler.send_header("Content-Type", "video/x-msvideo")
    handler.send_header("Content-Length", str(len(whole)))
    handler.end_headers()
    handler.wfile.write(whole[:upto])
    handler.wfile.flush()


def send_mjpeg(
    handler: http.server.BaseHTTPRequestHandler, jpegs: Sequence[bytes], fps: float, sent: list[int]
) -> None:
    """A live MJPEG stream (multipart/x-mixed-replace, as IP cameras serve it): the JPEGs at
    `fps` in real time; `sent[0]` is the number of frames sent so far. Ends when the client goes."""
    handler.send_response(200)
    handler.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
    handler.end_headers()
    start = time.perf_counter()
    for i, jpeg in enumerate(jpegs):
        part = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n" % (len(jpeg), jpeg)
        try:
            handler.wfile.write(part)
            handler.wfile.flush()
        except OSError:
            return
        sent[0] = i + 1
        time.sleep(max(0.0, start + (i + 1) / fps - time.perf_counter()))


@contextlib.contextmanager
def serve(respond: Respond) -> Iterator[str]:
    """Yield http://127.0.0.1:PORT/live.avi; `respond(n, handler)` answers the n-th request (from 1)."""
    count = 0
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            nonlocal count
            with lock:
                count += 1
                n = count
            respond(n, self)

        def log_message(self, *args):
            pass

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True  # a stalled response must not hold up the shutdown
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/live.avi"
    finally:
        server.shutdown()
        server.server_close()
