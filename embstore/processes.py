"""Processes of this host: what a builder, a publisher or a driver records as its owner, and
whether that owner still runs (leftovers of dead owners are reaped; live ones are left alone)."""

from __future__ import annotations

import os
import socket

HOST = socket.gethostname()


def pid_alive(pid: int) -> bool:
    """Whether a process of this host with that pid still runs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
