"""Worker inventory: watch the ``workers_file`` that other systems write and reload when it changes.

A fleet manager adds and retires workers by rewriting that file. The exporter polls the file's
size and modification time every ``exporter.workers_file_check_interval``. When they change, it
reloads the whole configuration, so the main file's credentials and defaults apply to new entries.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

# Device, inode, size and modification time (ns) of one version of the file. A rename over the
# file, the safe way to rewrite it, changes the inode even within one mtime tick.
FileSignature = tuple[int, int, int, int]


def file_signature(path: str) -> FileSignature | None:
    """Return the signature of the file at ``path``, or None when it cannot be read."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns


class InventoryWatcher:
    """Poll the inventory file and call ``reload`` when its signature changes.

    ``current`` returns the path and the check interval of the running configuration, so a reload
    that names another file or interval takes effect on the next poll.
    """

    def __init__(
        self,
        current: Callable[[], tuple[str | None, float]],
        reload: Callable[[], Awaitable[bool]],
    ) -> None:
        self._current = current
        self._reload = reload
        self._seen: tuple[str, FileSignature | None] | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        path, _ = self._current()
        if path is not None:
            self._seen = (path, file_signature(path))
        self._task = asyncio.create_task(self._run(), name="inventory watcher")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def remember(self) -> None:
        """Take the file as it is now as seen, after a reload that read it for another reason."""
        path, _ = self._current()
        self._seen = None if path is None else (path, file_signature(path))

    async def check(self) -> bool | None:
        """Reload if the inventory file changed since it was last seen; return the reload's outcome or None."""
        path, _ = self._current()
        if path is None:
            self._seen = None
            return None
        signature = file_signature(path)
        if self._seen == (path, signature):
            return None
        previous = self._seen
        self._seen = (path, signature)
        if previous is not None and previous[0] == path:
            log.info("workers file changed", extra={"file": path})
        return await self._reload()

    async def _run(self) -> None:
        while True:
            _, interval = self._current()
            await asyncio.sleep(interval)
            try:
                await self.check()
            except Exception as error:  # the watcher must outlive one failed reload
                log.error("workers file check failed", extra={"error": repr(error)}, exc_info=error)
