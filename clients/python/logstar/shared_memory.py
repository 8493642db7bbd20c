"""Frames through shared memory, for a client on logstard's host.

A 2048² float32 frame is 16 MiB; through gRPC it is copied several times
and framed in HTTP/2. A client on the daemon's machine can instead write
the pixels into a POSIX shared memory object that the daemon reads, and
send only where they are::

    with client.shared_memory_ring(slots=4, slot_bytes=2048 * 2048 * 4) as ring:
        for record in session.stream(frames, shared_memory=ring):
            ...

Contracts
---------
* A :class:`SharedMemoryRing` is one object in ``/dev/shm`` (Linux) cut
  into ``slots`` equal slots, registered with the daemon under ``region``.
  A stream writes frame *i* into slot *i* mod ``slots`` and waits, before
  reusing a slot, for the answer (result, dropped or error) of the frame
  that was in it: a region's bytes must not change until the daemon has
  answered the frame that uses them. So ``slots`` also bounds the frames
  in flight.
* The object is created with ``mode`` (default 0o600: only this user). A
  daemon running as another user (e.g. the systemd unit's dynamic user)
  needs 0o644, or 0o640 and a group it is in; registration then fails with
  PERMISSION_DENIED naming the mode.
* The daemon registers only clients on its host (loopback or a Unix
  socket) and forgets regions when it restarts (frames then fail naming
  the region; :meth:`SharedMemoryRing.register` again).
* :meth:`close` (or leaving the ``with`` block) unregisters the region and
  removes the object. A ring serves one stream at a time.
* With a daemon on a Unix socket (``unix:PATH``) the ring is instead a
  sealed memory file (``os.memfd_create``, sealed against growing and
  shrinking) whose descriptor goes to the daemon's descriptor socket
  (``PATH.fd``, ``socket.send_fds``): the daemon maps it and reads frames in
  place, without the copy a POSIX object costs it (``memfd=None``, the
  default, takes this path when it can and POSIX shared memory otherwise;
  ``True`` insists, ``False`` never). ``mode`` does not apply to it: the
  descriptor itself is the permission.
"""
from __future__ import annotations

import fcntl
import mmap
import os
import secrets
import socket
import threading
from typing import Optional, Tuple

import numpy as np

from .errors import InvalidFrame, LogstarError

_SHM_DIR = "/dev/shm"


def memfd_socket(addr: str) -> Optional[str]:
    """The daemon's descriptor socket beside its Unix socket address
    (``unix:PATH`` -> ``PATH.fd``, ``unix-abstract:NAME`` -> the abstract
    ``NAME.fd``, with a leading NUL); None for TCP."""
    if addr.startswith("unix-abstract:"):
        return "\0" + addr[len("unix-abstract:"):] + ".fd"
    if addr.startswith("unix:"):
        path = addr[len("unix:"):]
        if path.startswith("//"):
            path = path[2:]
        return path + ".fd" if path else None
    return None


def _hand_over(addr: str, fd: int) -> str:
    """Sends ``fd`` to the daemon's descriptor socket; the key to register
    it under (``memfd:<token>``). OSError when the daemon has none."""
    path = memfd_socket(addr)
    if path is None:
        raise OSError(f"memory files go to a daemon over its Unix socket, not {addr}")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(path)
        socket.send_fds(s, [b"LSF1"], [fd])
        answer = b""
        while not answer.endswith(b"\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            answer += chunk
    line = answer.decode(errors="replace").strip()
    if not line.startswith("OK "):
        raise LogstarError(f"the daemon at {addr} refused the memory file: {line}")
    return "memfd:" + line[3:]


def _sealed_memfd(size: int) -> Tuple[int, mmap.mmap]:
    """A memory file of ``size`` bytes, reserved, sealed and mapped."""
    fd = os.memfd_create("logstar-frames", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        os.ftruncate(fd, size)
        os.posix_fallocate(fd, 0, size)  # the daemon refuses holes
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS,
                    fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
        return fd, mmap.mmap(fd, size)
    except BaseException:
        os.close(fd)
        raise


class SharedMemoryRing:
    """Slots of one shared memory object, registered with logstard. Made by
    :meth:`logstar.Client.shared_memory_ring`."""

    def __init__(self, client, slots: int, slot_bytes: int, *, region: Optional[str] = None,
                 mode: int = 0o600, memfd: Optional[bool] = None) -> None:
        if slots < 1:
            raise ValueError(f"slots must be >= 1, got {slots}")
        if slot_bytes < 1:
            raise ValueError(f"slot_bytes must be >= 1, got {slot_bytes}")
        self._memfd = -1  # the memory file's descriptor, when the ring is one
        can_memfd = (hasattr(os, "memfd_create") and hasattr(socket, "send_fds")
                     and memfd_socket(client.addr) is not None)
        if memfd and not can_memfd:
            raise LogstarError("memfd=True needs Linux, Python >= 3.9 and a daemon on a Unix "
                               f"socket; {client.addr} is not")
        if not can_memfd and not os.path.isdir(_SHM_DIR):
            raise LogstarError(f"shared memory needs {_SHM_DIR} (Linux); send frames in the "
                               f"message instead")
        self.slots = slots
        # Slots start on 64-byte boundaries, so every dtype is aligned.
        self.slot_bytes = (slot_bytes + 63) // 64 * 64
        self.region = region or f"py-{os.getpid()}-{secrets.token_hex(4)}"
        self.key = f"/logstar-{self.region}"
        self._client = client
        self._path = os.path.join(_SHM_DIR, self.key[1:])
        size = self.slots * self.slot_bytes
        self._free = threading.Semaphore(slots)
        self._next = 0
        self._registered = False
        if can_memfd and memfd is not False:
            self._memfd, self._map = _sealed_memfd(size)
            self._path = ""
            try:
                self.register()
                return
            except OSError:
                # No descriptor socket (an older daemon): POSIX, unless insisted on.
                self._map.close()
                os.close(self._memfd)
                self._memfd = -1
                self._path = os.path.join(_SHM_DIR, self.key[1:])
                if memfd:
                    raise
            except BaseException:
                self._map.close()
                os.close(self._memfd)
                raise
        fd = os.open(self._path, os.O_CREAT | os.O_EXCL | os.O_RDWR, mode)
        try:
            os.fchmod(fd, mode)  # the umask narrowed what os.open set
            os.ftruncate(fd, size)
            # tmpfs allocates a page on its first write: on a full /dev/shm
            # that write would be SIGBUS. Reserving now makes it an OSError.
            os.posix_fallocate(fd, 0, size)
            self._map = mmap.mmap(fd, size)
        except BaseException:
            os.close(fd)
            os.unlink(self._path)
            raise
        os.close(fd)
        try:
            self.register()
        except BaseException:
            self._map.close()
            os.unlink(self._path)
            raise

    @property
    def byte_size(self) -> int:
        return self.slots * self.slot_bytes

    def register(self) -> None:
        """Registers the object with the daemon (again, e.g. after it
        restarted)."""
        if self._memfd >= 0:
            # A token serves once: a restarted daemon gets the descriptor anew.
            self.key = _hand_over(self._client.addr, self._memfd)
        self._client._register_shared_memory(self.region, self.key, self.byte_size)
        self._registered = True

    @property
    def is_memfd(self) -> bool:
        """Whether the ring is a sealed memory file the daemon maps."""
        return self._memfd >= 0

    def close(self) -> None:
        """Unregisters the region (if the daemon is still there) and removes
        the object. Idempotent."""
        if self._map.closed:
            return
        if self._registered:
            try:
                self._client._unregister_shared_memory(self.region)
            except LogstarError:
                pass  # the daemon is gone or restarted: nothing to undo there
            self._registered = False
        self._map.close()
        if self._memfd >= 0:
            os.close(self._memfd)  # the daemon's descriptor is its own
            self._memfd = -1
            return
        try:
            os.unlink(self._path)
        except FileNotFoundError:
            pass

    def __enter__(self) -> "SharedMemoryRing":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- for Session.stream
    def _acquire(self, stop: threading.Event) -> int:
        """The next slot, once the frame that was in it is answered; -1 if
        ``stop`` is set meanwhile (the stream ended)."""
        while not self._free.acquire(timeout=0.1):
            if stop.is_set():
                return -1
        slot = self._next
        self._next = (self._next + 1) % self.slots
        return slot

    def _release(self) -> None:
        """The oldest slot in use is free: its frame was answered."""
        self._free.release()

    def _give_back(self, slot: int) -> None:
        """The slot just acquired was not used (the frame was refused before
        it was sent): the next frame takes it."""
        self._next = slot
        self._free.release()

    def _sink(self, slot: int):
        """A frames.PixelSink that writes into ``slot``."""
        def write(array: np.ndarray, dtype: np.dtype) -> Tuple[str, int]:
            nbytes = array.size * dtype.itemsize
            if nbytes > self.slot_bytes:
                raise InvalidFrame(f"frame of {array.shape[0]} x {array.shape[1]} {dtype} needs "
                                   f"{nbytes} bytes, more than the shared memory ring's slots "
                                   f"of {self.slot_bytes}")
            offset = slot * self.slot_bytes
            view = np.ndarray(array.shape, dtype=dtype, buffer=self._map, offset=offset)
            view[...] = array  # converts to the wire's little-endian dtype
            return self.region, offset
        return write
