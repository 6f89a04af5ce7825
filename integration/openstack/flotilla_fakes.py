"""nova virt driver for flotilla's test cloud: nova's fake driver, plus one fault switch.

    compute_driver = flotilla_fakes.FlakyFakeDriver    (the module is copied into nova/virt/)

If the file named by FLOTILLA_FAKE_FAIL_FILE (default /dev/shm/flotilla-os/fail-spawns) holds a
number N > 0, the next spawn decrements it and aborts: the server goes to ERROR with a fault
message, exactly what a real hypervisor failure looks like to the API. Tests use it to prove
that flotilla surfaces the fault and replaces the server.

A second switch is on nova's API (`nova_api`, the WSGI app nova-api is started with): while
the file named by FLOTILLA_FAKE_LOSE_FILE (default /dev/shm/flotilla-os/lose-server-creates)
holds N > 0, a `POST /servers` is carried out (the server is created) and its answer replaced by
504: a create whose reply was lost, as a slow API behind a proxy produces. Tests use it to prove
that flotilla does not create the server twice.

FakeDriverWithoutFakeNodes keeps a stable node id across nova-compute restarts (plain FakeDriver
invents a new one per process, and a restarted compute then refuses to start).
"""
import fcntl
import os

from nova import exception
from nova.virt import fake

FAIL_FILE = os.environ.get("FLOTILLA_FAKE_FAIL_FILE", "/dev/shm/flotilla-os/fail-spawns")
LOSE_FILE = os.environ.get("FLOTILLA_FAKE_LOSE_FILE", "/dev/shm/flotilla-os/lose-server-creates")


def _take_failure(path=None):
    """Takes one from the counter in `path` (FAIL_FILE by default): True if it was above 0."""
    try:
        with open(path or FAIL_FILE, "r+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            n = int((f.read() or "0").strip() or 0)
            if n <= 0:
                return False
            f.seek(0)
            f.truncate()
            f.write(str(n - 1))
            return True
    except (FileNotFoundError, ValueError):
        return False


class FlakyFakeDriver(fake.FakeDriverWithoutFakeNodes):
    def spawn(self, context, instance, image_meta, injected_files, admin_password, allocations,
              network_info=None, block_device_info=None, power_on=True, accel_info=None):
        if _take_failure():
            raise exception.BuildAbortException(instance_uuid=instance.uuid,
                                                reason="injected hypervisor failure (flotilla test cloud)")
        return super().spawn(context, instance, image_meta, injected_files, admin_password, allocations,
                             network_info, block_device_info, power_on, accel_info)


_nova_app = None


def nova_api(environ, start_response):
    """nova's compute API, with the lost-answer switch described above."""
    global _nova_app
    if _nova_app is None:
        from nova.wsgi.osapi_compute import application

        _nova_app = application
    is_create = environ.get("REQUEST_METHOD") == "POST" and environ.get("PATH_INFO", "").rstrip("/").endswith("/servers")
    if not (is_create and _take_failure(LOSE_FILE)):
        return _nova_app(environ, start_response)
    answer = _nova_app(environ, lambda status, headers, exc_info=None: (lambda data: None))
    try:
        for _ in answer:
            pass
    finally:
        close = getattr(answer, "close", None)
        if close:
            close()
    start_response("504 Gateway Timeout", [("Content-Type", "text/plain")])
    return [b"the create went through; its answer was lost (flotilla test cloud fault)"]
