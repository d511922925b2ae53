"""A notebook's scratch directory: the only place its kernel writes, with a total size limit where
the grader can set one, and a removal that cannot fail on whatever tree the kernel built there.

``base/`` is the grader's (``--strict`` stubs); ``base/work/`` is the kernel's working directory
and home. When the grader runs as root, ``work/`` is a tmpfs of its own, mounted for this notebook
with a size limit (``nosuid``, ``nodev``, owned by the kernel's uid): the kernel's files, however
many, fill at most that, and the whole tree goes with one unmount. Elsewhere (not root, or a
machine that refuses the mount) the directory is on the host's disk, each file bounded only by
RLIMIT_FSIZE, and :func:`remove_tree` takes it apart.
"""
from __future__ import annotations

import ctypes
import os
import secrets
import tempfile
from pathlib import Path

QUOTA = 512 << 20             # bytes of files the kernel may keep in its scratch (where a tmpfs is mounted)
OPEN_DIRS = 64                # folders held open at once while removing; deeper ones are moved up first
MNT_NOSUID, MNT_NODEV, MNT_DETACH = 2, 4, 2
_LIBC = ctypes.CDLL(None, use_errno=True)


def _mount_tmpfs(path: Path, size: int, uid: int | None) -> str | None:
    """Mount a tmpfs of ``size`` bytes on ``path`` (root only); None when mounted, else why not."""
    owner = f",uid={uid},gid={uid}" if uid is not None else ""
    options = f"size={size},mode=0700,nr_inodes={max(1024, size >> 12)}{owner}".encode()
    if _LIBC.mount(b"tmpfs", os.fsencode(path), b"tmpfs", MNT_NOSUID | MNT_NODEV, options) != 0:
        return f"a tmpfs could not be mounted: {os.strerror(ctypes.get_errno())}"
    return None


def _unmount(path: Path) -> None:
    _LIBC.umount2(os.fsencode(path), MNT_DETACH)


def quota_works() -> str | None:
    """None when the grader can give a scratch a size limit here, else why not."""
    if os.geteuid() != 0:
        return "not root"
    folder = Path(tempfile.mkdtemp(prefix="sa-grade-"))
    try:
        why = _mount_tmpfs(folder, 1 << 20, None)
        if why is None:
            _unmount(folder)
        return why
    finally:
        folder.rmdir()


class Scratch:
    """A fresh directory per notebook: ``work/`` (the kernel's cwd and home, the only place it
    writes, with ``tmp/`` in it) inside a folder of the grader's own."""

    def __init__(self, uid: int | None, quota: int = QUOTA):
        self.base = Path(tempfile.mkdtemp(prefix="sa-grade-"))
        os.chmod(self.base, 0o711)
        self.work = self.base / "work"
        self.work.mkdir(mode=0o700)
        self.why_no_quota = _mount_tmpfs(self.work, quota, uid) if os.geteuid() == 0 else "not root"
        self.quota = None if self.why_no_quota else quota
        self.work_fd = -1
        try:
            (self.work / "tmp").mkdir(mode=0o700)
            if uid is not None:
                for p in (self.work, self.work / "tmp"):
                    os.chown(p, uid, uid)
            self.work_fd = os.open(self.work, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except BaseException:
            self.remove()
            raise

    def remove(self) -> bool:
        """Remove everything (never raises); True when nothing is left."""
        if self.work_fd >= 0:
            os.close(self.work_fd)
            self.work_fd = -1
        if self.quota is not None:
            _unmount(self.work)
        return remove_tree(self.base)


def _opened(name: str, parent: int) -> int:
    """A folder opened by name in ``parent``, never through a link; made readable first if need be."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(name, flags, dir_fd=parent)
    except PermissionError:
        handle = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        try:
            os.chmod(f"/proc/self/fd/{handle}", 0o700)    # this very folder: no name to swap for a link
        finally:
            os.close(handle)
        return os.open(name, flags, dir_fd=parent)


def _unlink(name: str, parent: int, is_dir: bool) -> None:
    remove = os.rmdir if is_dir else os.unlink
    try:
        remove(name, dir_fd=parent)
    except PermissionError:
        os.chmod(parent, 0o700)
        remove(name, dir_fd=parent)


def _next_folder(fd: int, top: int, depth: int, stuck: set):
    """Empty the folder ``fd`` of everything but folders; return (fd, name) of the first folder in it
    to descend into, or None when none is left (a folder too deep to open is moved up to ``top``)."""
    here = os.fstat(fd).st_ino
    with os.scandir(fd) as entries:
        for entry in entries:
            if (here, entry.name) in stuck:
                continue
            try:
                if not entry.is_dir(follow_symlinks=False):
                    _unlink(entry.name, fd, False)
                elif depth < OPEN_DIRS:
                    return _opened(entry.name, fd), entry.name
                else:
                    os.rename(entry.name, f".sa-removing-{secrets.token_hex(8)}", src_dir_fd=fd, dst_dir_fd=top)
            except OSError:
                stuck.add((here, entry.name))
    return None


def remove_tree(path: Path) -> bool:
    """Remove ``path`` and everything under it; True when it is gone. Never raises, never follows a
    link (a link is removed, not what it points to), needs no recursion and holds at most OPEN_DIRS
    folders open however deep the tree: a folder deeper than that is first moved up to ``path``
    itself. A folder without permissions is given them (the grader owns it, or is root); an entry
    that still cannot be removed is skipped, and the answer is False."""
    path = Path(path)
    try:
        parent = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return not os.path.lexists(path)
    stack, stuck = [], set()
    try:
        if not os.path.isdir(path) or os.path.islink(path):
            _unlink(path.name, parent, False)
            return True
        stack.append((_opened(path.name, parent), path.name))
        while stack:
            found = _next_folder(stack[-1][0], stack[0][0], len(stack), stuck)
            if found is not None:
                stack.append(found)
                continue
            fd, name = stack.pop()
            os.close(fd)
            above = stack[-1][0] if stack else parent
            try:
                _unlink(name, above, True)
            except OSError:
                stuck.add((os.fstat(above).st_ino, name))
    except OSError:
        pass
    finally:
        for fd, _ in stack:
            os.close(fd)
        os.close(parent)
    return not os.path.lexists(path)
