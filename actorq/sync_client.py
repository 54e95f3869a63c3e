"""``SyncClient``: ``actorq.client.Client``'s methods for code without an event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, Concatenate, ParamSpec, TypeVar

from actorq.client import Client
from actorq.errors import ActorqError

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


def _blocking(
    method: Callable[Concatenate[Client, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[SyncClient, P], R]:
    def call(self: SyncClient, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._run(method(self._client, *args, **kwargs))

    call.__name__, call.__doc__ = method.__name__, method.__doc__
    return call


def _iterating(
    method: Callable[Concatenate[Client, P], AsyncIterator[T]],
) -> Callable[Concatenate[SyncClient, P], Iterator[T]]:
    def call(self: SyncClient, /, *args: P.args, **kwargs: P.kwargs) -> Iterator[T]:
        return self._iterate(method(self._client, *args, **kwargs))

    call.__name__, call.__doc__ = method.__name__, method.__doc__
    return call


async def _next(items: AsyncIterator[T]) -> tuple[T] | None:
    """The next item, boxed; None at the end (StopAsyncIteration cannot cross threads)."""
    try:
        return (await anext(items),)
    except StopAsyncIteration:
        return None


class SyncClient:
    """``Client``'s methods for code without an event loop: each call blocks until its answer.

    The client runs a private event loop in a thread of its own, started on first use and
    stopped by ``close()`` (or the ``with`` block); ``list`` and ``events`` are plain
    generators. Do not call it from inside a running event loop: use ``Client`` there.
    """

    def __init__(self, base_url: str, token: str | None = None, *, timeout: float = 30.0) -> None:
        self._client = Client(base_url, token, timeout=timeout)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def base_url(self) -> str:
        return self._client.base_url

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    submit = _blocking(Client.submit)
    submit_many = _blocking(Client.submit_many)
    get = _blocking(Client.get)
    wait = _blocking(Client.wait)
    list = _iterating(Client.list)
    history = _blocking(Client.history)
    cancel = _blocking(Client.cancel)
    retry = _blocking(Client.retry)
    schedules = _blocking(Client.schedules)
    schedule = _blocking(Client.schedule)
    create_schedule = _blocking(Client.create_schedule)
    change_schedule = _blocking(Client.change_schedule)
    pause_schedule = _blocking(Client.pause_schedule)
    resume_schedule = _blocking(Client.resume_schedule)
    delete_schedule = _blocking(Client.delete_schedule)
    dead_letters = _iterating(Client.dead_letters)
    retry_dead_letters = _blocking(Client.retry_dead_letters)
    purge_dead_letters = _blocking(Client.purge_dead_letters)
    types = _blocking(Client.types)
    stats = _blocking(Client.stats)
    health = _blocking(Client.health)
    ready = _blocking(Client.ready)
    events = _iterating(Client.events)
    nodes = _blocking(Client.nodes)
    node = _blocking(Client.node)
    command_node = _blocking(Client.command_node)
    queues = _blocking(Client.queues)
    queue = _blocking(Client.queue)
    configure_queue = _blocking(Client.configure_queue)
    pause_queue = _blocking(Client.pause_queue)
    resume_queue = _blocking(Client.resume_queue)
    purge_queue = _blocking(Client.purge_queue)
    tokens = _blocking(Client.tokens)
    create_token = _blocking(Client.create_token)
    revoke_token = _blocking(Client.revoke_token)

    def close(self) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
            self._closed = True
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._client.close(), loop).result()
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.run_until_complete(loop.shutdown_asyncgens())  # iterators left open
            loop.close()

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._closed:
                raise ActorqError("this client is closed")
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(
                    target=self._loop.run_forever, name="actorq-client", daemon=True
                )
                self._thread.start()
            return self._loop

    def _run(self, coro: Coroutine[Any, Any, R]) -> R:
        future = asyncio.run_coroutine_threadsafe(coro, self._running_loop())
        try:
            return future.result()
        except BaseException:
            future.cancel()  # the caller was interrupted (Ctrl-C): the call stops too
            raise

    def _iterate(self, items: AsyncIterator[T]) -> Iterator[T]:
        try:
            while True:
                got = self._run(_next(items))
                if got is None:
                    return
                yield got[0]
        finally:
            if isinstance(items, AsyncGenerator) and self._loop is not None:
                self._run(items.aclose())
