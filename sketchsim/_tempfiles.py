"""Temporary files of atomic writes: names that carry their writer's pid, and their clean-up.

An atomic write (``sketchsim._io.atomic_path``) writes ``<dir>/.tmp-<pid>-<random><suffix>`` and
renames it onto the target. A process killed in between (SIGKILL, out-of-memory kill, power loss)
leaves that temporary file behind. :func:`remove_stale_temps`, called by a command before it writes
into a folder, removes the leftovers whose writer is dead and leaves alone those of live writers
(a concurrent sweep into the same folder).

Name patterns
    ``.tmp-<pid>-<random>…``   written by process ``<pid>`` (see :func:`temp_prefix`); removed when
                               no process ``<pid>`` exists and the file has not been modified for
                               ``grace_s`` seconds.
    ``.tmp-<random>…``         the older pattern without a pid (``<random>`` holds no ``-``); its
                               writer cannot be known, so it is removed only once it has not been
                               modified for ``legacy_max_age_s`` seconds.

The grace period protects a folder shared by several machines (a network file system), where a pid
names a process of another host: a live write modifies its file continuously and finishes within
seconds.
"""
from __future__ import annotations

import os
import re
import time

__all__ = ["TEMP_PREFIX", "temp_prefix", "pid_alive", "remove_stale_temps"]

TEMP_PREFIX = ".tmp-"
"""Common prefix of every temporary file of an atomic write."""

_PID_RE = re.compile(r"^\.tmp-(\d+)-.")
_LEGACY_RE = re.compile(r"^\.tmp-[^-]+$")


def temp_prefix(pid=None):
    """Prefix ``.tmp-<pid>-`` for a temporary file written by process ``pid`` (default: this one).

    Use it as ``tempfile.mkstemp(prefix=temp_prefix(), suffix=..., dir=...)``, which appends a
    random part, so that :func:`remove_stale_temps` can tell a dead writer's file from a live one's.
    """
    return f"{TEMP_PREFIX}{os.getpid() if pid is None else int(pid)}-"


def pid_alive(pid):
    """True when a process ``pid`` exists on this host (also when it belongs to another user).

    A recycled pid (the writer died and another process got its number) counts as alive, which
    errs on the safe side: the file is kept.
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True
    return True


def remove_stale_temps(directory, grace_s=60.0, legacy_max_age_s=3600.0):
    """Remove the temporary files of atomic writes left in ``directory`` by dead writers.

    Parameters
    ----------
    directory : path
        Folder to clean (not recursive). A missing folder is nothing to clean.
    grace_s : float
        ``.tmp-<pid>-…`` files are removed when process ``<pid>`` is not alive and the file is at
        least this old (seconds since its last modification).
    legacy_max_age_s : float
        ``.tmp-<random>…`` files (no pid in the name) are removed when at least this old.

    Returns
    -------
    list of str
        Names of the files removed. Files that vanish meanwhile (their writer renamed them, or a
        concurrent clean-up removed them) and files that cannot be removed are skipped silently.
    """
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return []
    now = time.time()
    removed = []
    for entry in entries:
        name = entry.name
        if not name.startswith(TEMP_PREFIX):
            continue
        m = _PID_RE.match(name)
        if m:
            if pid_alive(int(m.group(1))):
                continue
            min_age = grace_s
        elif _LEGACY_RE.match(name):
            min_age = legacy_max_age_s
        else:
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            if now - entry.stat(follow_symlinks=False).st_mtime < min_age:
                continue
            os.unlink(entry.path)
        except OSError:  # gone meanwhile, or not ours to remove
            continue
        removed.append(name)
    return sorted(removed)
