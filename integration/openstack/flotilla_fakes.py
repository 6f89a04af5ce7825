"""nova virt driver for flotilla's test cloud: nova's fake driver, plus one fault switch.

    compute_driver = flotilla_fakes.FlakyFakeDriver    (the module is copied into nova/virt/)

If the file named by FLOTILLA_FAKE_FAIL_FILE (default /dev/shm/flotilla-os/fail-spawns) holds a
number N > 0, the next spawn decrements it and aborts: the server goes to ERROR with a fault
message, exactly what a real hypervisor failure looks like to the API. Tests use it to prove
that flotilla surfaces the fault and replaces the server.

A second switch is on nova's API: see flotilla_nova_api.py.

FakeDriverWithoutFakeNodes keeps a stable node id across nova-compute restarts (plain FakeDriver
invents a new one per process, and a restarted compute then refuses to start).
"""
import os

from flotilla_counter import take
from nova import exception
from nova.virt import fake

FAIL_FILE = os.environ.get("FLOTILLA_FAKE_FAIL_FILE", "/dev/shm/flotilla-os/fail-spawns")


def _take_failure():
    return take(FAIL_FILE)


class FlakyFakeDriver(fake.FakeDriverWithoutFakeNodes):
    def spawn(self, context, instance, image_meta, injected_files, admin_password, allocations,
              network_info=None, block_device_info=None, power_on=True, accel_info=None):
        if _take_failure():
            raise exception.BuildAbortException(instance_uuid=instance.uuid,
                                                reason="injected hypervisor failure (flotilla test cloud)")
        return super().spawn(context, instance, image_meta, injected_files, admin_password, allocations,
                             network_info, block_device_info, power_on, accel_info)

