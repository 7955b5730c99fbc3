"""The hook's glue for learned limits (hooks/learned.py): load them at start-up, persist what a
response's headers change, and in Redis mode take what other instances learned (a poll of the
store's notes every second, so a limit learned on A holds on B within a second or two).

Needs from the hook: settings, store, shared, _headers, _store (declared under TYPE_CHECKING only)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

from hooks import learned as learned_mod
from hooks.deployment import Deployment
from hooks.learned import Learned, LearnedLimits
from hooks.logs import log
from hooks.quota import StoreUnavailable

SYNC_EVERY = 1.0  # seconds between two reads of the shared figures (Redis mode)
FORGET_TTL = 1.0  # a note overwritten with nothing and this TTL: the figure is forgotten everywhere


class LearnedMixin:
    if TYPE_CHECKING:
        settings: Any
        store: Any
        shared: bool
        _headers: Any  # settlement.HeaderLearning
        _store: Any  # None until the hook builds its own store from the settings

    @property
    def learned(self) -> LearnedLimits:
        got = self.__dict__.get("_learned")
        if got is None:
            # A lone process keeps them beside the memory store's parks.json; a store handed in
            # (tests, tools) keeps them in its notes only, like its parks.
            own_memory = not self.shared and self.__dict__.get("_store") is None
            path = self.settings.data_dir / "learned.json" if own_memory else None
            got = self.__dict__["_learned"] = LearnedLimits(path)
        return got

    async def learned_start(self) -> None:
        """Once per process, before the first admission: what the provider stated before."""
        if self.__dict__.get("_learned_started"):
            return
        self.__dict__["_learned_started"] = True
        try:
            if self.shared:
                await self._learned_sync()
                self.__dict__["_learned_task"] = asyncio.get_running_loop().create_task(self._learned_follow())
            else:
                found = self.learned.load_file()
                if self.learned.path is None:  # a store handed in: its notes are all there is
                    found = learned_mod.from_notes(await self.store.notes(learned_mod.NOTE_PREFIX))
                self.learned.replace_all(found)
        except Exception:
            log.exception("keypool: could not load the learned limits; the catalog's hold until restated")

    async def _learned_sync(self) -> None:
        notes = await self.store.notes(learned_mod.NOTE_PREFIX)
        self.learned.replace_all(learned_mod.from_notes(notes))

    async def _learned_follow(self) -> None:
        while True:
            await asyncio.sleep(SYNC_EVERY)
            with contextlib.suppress(StoreUnavailable):
                await self._learned_sync()

    async def limit_stated(self, info: Deployment, window: str | None, limit: int | None, source: str) -> None:
        """A limit an error body states (Groq's "Limit 1000, Used 1000, ..."): as a header's."""
        if limit is not None:
            with contextlib.suppress(StoreUnavailable):
                await self._headers.stated(info, window, limit, time.time(), source)

    async def learned_changed(self, bucket: str, window: str, now_in_force: Learned | None) -> None:
        """HeaderLearning's notice: a stated limit changed what is in force for (bucket, window)."""
        name = learned_mod.note_name(bucket, window)
        with contextlib.suppress(StoreUnavailable):  # the provider states it again on the next response
            if now_in_force is None:
                await self.store.put_note(name, "", FORGET_TTL)
            else:
                await self.store.put_note(name, learned_mod.encode(bucket, window, now_in_force), learned_mod.NOTE_TTL)
        if not self.shared:
            await asyncio.to_thread(self.learned.save_file)
