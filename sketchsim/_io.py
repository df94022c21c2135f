"""Safe output files: checked targets, written to a temporary file and renamed into place.

An interrupted or failed command therefore never leaves a partial output file behind, and an
output never replaces something that is not a writable regular file (a device, a FIFO, a
directory, a symlink, a read-only file) or one of the command's own inputs. Temporary files are
named ``.tmp-<pid>-<random><suffix>``; those of dead processes are removed by the next command
that writes into the same folder (:func:`sketchsim._tempfiles.remove_stale_temps`, once per folder).
"""
from __future__ import annotations

import os
import stat
import tempfile
from contextlib import contextmanager

import numpy as np

from ._tempfiles import remove_stale_temps, temp_prefix

_CLEANED = set()
"""Folders this process has already cleaned of dead writers' temporary files (once per folder)."""


def check_output_path(path, name="--out", inputs=()):
    """Refuse an output target that must not be replaced; return the path as a string.

    Parameters
    ----------
    path : str or PathLike
        The output file.
    name : str
        The parameter's name for messages (``--out``).
    inputs : sequence of paths
        The command's own input files: the output may not be one of them.

    Raises
    ------
    ValueError
        ``path`` is empty, ends in a separator, is a symlink, exists and is not a regular file
        (device, FIFO, socket, directory), exists read-only, is one of ``inputs``, or its folder
        exists and is not writable.
    """
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise ValueError(f"{name} must be a file path; got {path!r}")
    path = os.fspath(path)
    if path.endswith(os.sep) or os.path.basename(path) in ("", ".", ".."):
        raise ValueError(f"{name} must name a file, not a folder; got {path!r}")
    if os.path.islink(path):
        raise ValueError(f"{name} must not be a symbolic link (it would be replaced by a file); got {path!r}")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise ValueError(f"{name} cannot be checked ({exc.strerror}); got {path!r}") from None
    if st is not None:
        if not stat.S_ISREG(st.st_mode):
            kind = ("a directory" if stat.S_ISDIR(st.st_mode) else "a device" if
                    stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "a FIFO" if
                    stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
            raise ValueError(f"{name} must be a regular file (or not exist yet); got {path!r}, which is {kind}")
        if not st.st_mode & 0o222:
            raise ValueError(f"{name} must not be a read-only file; got {path!r} (mode "
                             f"{stat.S_IMODE(st.st_mode):o})")
        for inp in inputs:
            try:
                if os.path.samefile(path, inp):
                    raise ValueError(f"{name} must not be the command's own input; got {path!r}, which is "
                                     f"the input {os.fspath(inp)!r}")
            except OSError:
                continue
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(directory) and not os.access(directory, os.W_OK | os.X_OK):
        raise ValueError(f"{name} must be in a writable folder; got {path!r}")
    return path


@contextmanager
def atomic_path(path, suffix="", name="output", inputs=()):
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success.

    The target is checked (:func:`check_output_path`) before and again just before the rename.
    """
    path = check_output_path(path, name, inputs)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    if directory not in _CLEANED:
        remove_stale_temps(directory)
        _CLEANED.add(directory)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(), suffix=suffix, dir=directory)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)      # mkstemp creates 0600; outputs get the usual permissions
    try:
        yield tmp
        check_output_path(path, name, inputs)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path, text, **check):
    with atomic_path(path, **check) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)


def atomic_save_npz(path, arrays, **check):
    """``np.savez`` to exactly ``path`` (no ``.npz`` appended), atomically."""
    with atomic_path(path, suffix=".npz", **check) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def atomic_save_npy(path, array, **check):
    with atomic_path(path, suffix=".npy", **check) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array)


def _meminfo_available():
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _read_int(path):
    try:
        with open(path) as fh:
            text = fh.read().strip()
    except OSError:
        return None
    if not text or text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _cgroup_headroom():
    """Bytes the process's cgroup (v2 or v1) still allows, or None when unlimited or unknown."""
    try:
        with open("/proc/self/cgroup") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    best = None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, rel = parts
        rel = rel.lstrip("/")
        if controllers == "":                                  # cgroup v2
            base = os.path.join("/sys/fs/cgroup", rel)
            limit, used = _read_int(os.path.join(base, "memory.max")), _read_int(os.path.join(base, "memory.current"))
        elif "memory" in controllers.split(","):               # cgroup v1
            base = os.path.join("/sys/fs/cgroup/memory", rel)
            if not os.path.isdir(base):
                base = "/sys/fs/cgroup/memory"
            limit = _read_int(os.path.join(base, "memory.limit_in_bytes"))
            used = _read_int(os.path.join(base, "memory.usage_in_bytes"))
            if limit is not None and limit >= 2**62:           # v1 "unlimited"
                limit = None
        else:
            continue
        if limit is not None:
            room = max(0, limit - (used or 0))
            best = room if best is None else min(best, room)
    return best


def _rlimit_headroom():
    """Bytes the address-space / data rlimits (``ulimit -v``, ``ulimit -d``) still allow, or None."""
    try:
        import resource
    except ImportError:                                        # pragma: no cover - not POSIX
        return None
    vm = data = None
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmSize:"):
                    vm = int(line.split()[1]) * 1024
                elif line.startswith("VmData:"):
                    data = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    best = None
    for which, used in ((getattr(resource, "RLIMIT_AS", None), vm), (getattr(resource, "RLIMIT_DATA", None), data)):
        if which is None:
            continue
        soft, _ = resource.getrlimit(which)
        if soft == resource.RLIM_INFINITY or soft < 0:
            continue
        room = max(0, soft - (used or 0))
        best = room if best is None else min(best, room)
    return best


def available_memory_bytes():
    """Memory this process may still allocate, or None when unknown.

    The smallest of the machine's MemAvailable, the headroom under the process's own rlimits
    (``ulimit -v`` / ``ulimit -d``) and the headroom of its cgroup (``memory.max``).
    """
    vals = [v for v in (_meminfo_available(), _rlimit_headroom(), _cgroup_headroom()) if v is not None]
    return min(vals) if vals else None


def check_allocation(name, value, nbytes, what):
    """Refuse, before allocating, a size that cannot fit in :func:`available_memory_bytes`.

    ``name=value`` is the parameter that sets the size, ``what`` says what would be allocated.
    """
    from ._validation import show

    avail = available_memory_bytes()
    if avail is not None and nbytes > avail:
        need = f"{nbytes / 2**30:.3g} GiB" if nbytes < 2**200 else "far more memory than exists"
        raise ValueError(f"{name}={show(value)} is too large: {what} needs {need} and this process may "
                         f"allocate {avail / 2**30:.3g} GiB (available memory, ulimit and cgroup limits)")
