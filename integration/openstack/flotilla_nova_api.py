"""nova-api for flotilla's test cloud: nova's compute API plus one fault switch.

While the file named by FLOTILLA_FAKE_LOSE_FILE (default /dev/shm/flotilla-os/lose-server-creates)
holds N > 0, a `POST /servers` is carried out (the server is created) and its answer replaced by
504: a create whose reply was lost, as a slow API behind a proxy produces. Tests use it to prove
that flotilla does not create the server twice.

A module of its own, importing nothing of nova's but the API: nova's virt modules import eventlet,
which the threaded API refuses to start with.
"""
import os

from flotilla_counter import take
from nova.wsgi.osapi_compute import application as nova_application

LOSE_FILE = os.environ.get("FLOTILLA_FAKE_LOSE_FILE", "/dev/shm/flotilla-os/lose-server-creates")


def application(environ, start_response):
    path = environ.get("PATH_INFO", "").rstrip("/")
    if not (environ.get("REQUEST_METHOD") == "POST" and path.endswith("/servers") and take(LOSE_FILE)):
        return nova_application(environ, start_response)
    answer = nova_application(environ, lambda status, headers, exc_info=None: (lambda data: None))
    try:
        for _ in answer:
            pass
    finally:
        close = getattr(answer, "close", None)
        if close:
            close()
    start_response("504 Gateway Timeout", [("Content-Type", "text/plain")])
    return [b"the create went through; its answer was lost (flotilla test cloud fault)"]
