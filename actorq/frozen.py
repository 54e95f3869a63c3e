"""What the one-file executable (scripts/actorq.spec) needs from the code it runs.

PyInstaller's one-file bootloader unpacks the bundle and runs Python in a child process; it
forwards SIGTERM and SIGINT to that child, but nothing can forward SIGKILL. Without help,
``kill -9`` of the executable's pid would kill only the bootloader and leave the node running
as an orphan, still holding the port and the database, so a restart would fail or run twice.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_bootloader() -> None:
    """In the executable's child process on Linux, have the kernel SIGKILL us when the
    bootloader dies, so both die together as one process would. Elsewhere, do nothing."""
    if not getattr(sys, "frozen", False) or not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    try:
        ours = os.readlink(f"/proc/{parent}/exe") == os.readlink("/proc/self/exe")
    except OSError:
        return
    if not ours:
        return  # a one-folder build, or started by another program: no bootloader above us
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the bootloader died before the request took effect
        os.kill(os.getpid(), signal.SIGKILL)
