"""App: what a Python user holds. Register handlers with ``@app.task``, enqueue with
``await app.enqueue(...)``, and run workers with ``await app.run()`` or ``actorq serve --app``.

In a process that runs the node, enqueue goes through the node's journal writer (shared
commits, instant pickup). Elsewhere (a web app that only submits) it writes to the journal
directly; the node finds the work through its wake-ups or its fallback poll. Such a client
keeps what it read of the cluster (the live nodes' task types, the queues' retry policies) for
``CLIENT_CACHE_SECONDS``, so a lone enqueue is one write: a queue's new policy applies to its
submissions at most that long after the change, and a node that stopped serving a type is
still trusted that much longer than its liveness allows anyway. A type it does not know
sends it to the journal again at once, so a node's new type is usable as soon as it is live.
Concurrent enqueues of a client share their commits (the journal's ``run``, see
``journal.shared_commits``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, TypeVar

from actorq.config import Config
from actorq.errors import ActorqError, UnknownTaskType
from actorq.journal import journal_from_url
from actorq.journal.base import Journal, Submit
from actorq.model import NewTask, Task, TaskState
from actorq.nodes import Catalog, catalog_from_journal, names_in
from actorq.queues import queue_policies
from actorq.retry import RetryDefaults, RetryPolicy
from actorq.runtime import Runtime
from actorq.schedules import parse_schedule
from actorq.tasks import Handler, Registry, parse_submission, task_decorator

T = TypeVar("T")

CLIENT_CACHE_SECONDS = 1.0
"""How long a client App (no node in its process) reuses the catalog and retry policies it
read from the journal."""


class App:
    def __init__(self, database_url: str | None = None, **settings: Any) -> None:
        """``settings`` are ``Config`` fields (concurrency, lease_seconds...); flags and
        ``ACTORQ_*`` variables override them."""
        self.settings: dict[str, Any] = dict(settings)
        if database_url is not None:
            self.settings["database_url"] = database_url
        self.registry = Registry()
        self.runtime: Runtime | None = None
        self._journal: Journal | None = None
        self._opening = asyncio.Lock()  # concurrent first calls open one journal, not one each
        self._config: Config | None = None  # the client's, loaded with its journal
        self._catalog: tuple[float, Catalog] | None = None  # (monotonic time read, catalog)
        self._retry: tuple[float, RetryDefaults] | None = None

    def task(
        self,
        name: str | None = None,
        *,
        max_attempts: int = 3,
        timeout: float | None = None,
        queue: str = "default",
        priority: int = 0,
        retry: RetryPolicy | None = None,
    ) -> Callable[[Handler], Handler]:
        """Register the decorated function as the handler of task type ``name``. ``retry``:
        the type's retry policy, for submissions that give none and whose queue has none;
        None leaves it to the node's default (``actorq.retry``)."""
        return task_decorator(
            self.registry,
            name,
            max_attempts=max_attempts,
            timeout=timeout,
            queue=queue,
            priority=priority,
            retry=retry,
        )

    def periodic(
        self,
        cron: str | None = None,
        *,
        every: float | None = None,
        name: str | None = None,
        timezone: str = "UTC",
        misfire: str = "skip",
        payload: Any = None,
    ) -> Callable[[Handler], Handler]:
        """Run the decorated handler on a schedule: ``cron`` (five fields, in ``timezone``) or
        ``every`` so many seconds. The schedule (named ``name``, default the function's name)
        is saved when a node starts, and journaled again only if its definition changed; an
        operator's pause stays. A handler not registered with ``@app.task`` (put that below
        this decorator) becomes a task type of the schedule's name."""

        def declare(fn: Handler) -> Handler:
            schedule_name = name or fn.__name__
            type_name = self.registry.name_of(fn)
            if type_name is None:
                self.task(schedule_name)(fn)
                type_name = schedule_name
            task = {"type": type_name, "payload": payload}
            body = {"name": schedule_name, "cron": cron, "every": every, "timezone": timezone,
                    "misfire": misfire, "task": task}  # fmt: skip
            self.registry.declare(parse_schedule(body, self.registry, time.time()))
            return fn

        return declare

    def config(self, flags: Mapping[str, Any] | None = None) -> Config:
        return Config.load(flags, base=self.settings)

    # -- running a node ------------------------------------------------------------------

    async def start(self, flags: Mapping[str, Any] | None = None, **kwargs: Any) -> Runtime:
        """Start a node in this process (workers, timers, reaper) and return it."""
        if self.runtime is not None:
            raise ActorqError("this App already runs a node")
        runtime = Runtime(self.config(flags), self.registry, **kwargs)
        await runtime.start()
        self.runtime = runtime
        return runtime

    async def stop(self) -> None:
        runtime, self.runtime = self.runtime, None
        if runtime is not None:
            await runtime.stop()
        journal, self._journal = self._journal, None
        self._config = self._catalog = self._retry = None
        if journal is not None:
            await journal.close()

    async def __aenter__(self) -> App:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- submitting ----------------------------------------------------------------------

    async def enqueue(
        self, task_type: str, payload: Any = None, *, connection: Any = None, **options: Any
    ) -> Task:
        """Submit one task; returns it once its ``submitted`` event is durable.

        Options: queue, priority, max_attempts, timeout, delay (seconds), scheduled_at
        (ISO 8601 or POSIX time), metadata, idempotency_key, retry (a ``RetryPolicy`` or its
        JSON form). With ``connection`` (an asyncpg
        connection inside a transaction, PostgreSQL only) the task is written in that
        transaction: it exists if and only if the caller commits.
        """
        item = {"type": task_type, "payload": payload, **options}
        (task,) = await self.enqueue_many([item], connection=connection)
        return task

    async def enqueue_many(
        self, items: Sequence[Mapping[str, Any]], *, connection: Any = None
    ) -> list[Task]:
        """Submit many tasks in one transaction: all of them, or none."""
        now = time.time()
        names = names_in(items)
        if self.runtime is not None:
            catalog = await self.runtime.catalog(names)
            retry = await self.runtime.retry_defaults()
        else:  # no node here: what the journal says, read at most CLIENT_CACHE_SECONDS ago
            catalog = await self._client_catalog(names, now)
            retry = await self._client_retry()
        tasks = [parse_submission(dict(item), catalog, now, retry) for item in items]
        return await self.submit(tasks, connection=connection)

    async def _client_catalog(self, names: Sequence[str], now: float) -> Catalog:
        """The live nodes' types (after this App's own), read again once stale or when one of
        ``names`` is unknown to the last read."""
        kept = _fresh(self._catalog)
        if kept is not None:
            try:
                for name in set(names):
                    kept.get(name)
            except UnknownTaskType:
                pass
            else:
                return kept
        journal = await self._client_journal()
        read_at = time.monotonic()
        interval = self._client_config().heartbeat_interval
        catalog = await catalog_from_journal(journal, self.registry, names, interval, now)
        self._catalog = (read_at, catalog)
        return catalog

    async def _client_retry(self) -> RetryDefaults:
        """The queues' policies, then the node's default as this process is configured."""
        kept = _fresh(self._retry)
        if kept is not None:
            return kept
        journal = await self._client_journal()
        read_at = time.monotonic()
        policies = queue_policies(await journal.queue_settings())
        retry = RetryDefaults(node=self._client_config().retry_policy, queues=policies)
        self._retry = (read_at, retry)
        return retry

    def _client_config(self) -> Config:
        if self._config is None:
            self._config = self.config()
        return self._config

    async def submit(self, tasks: Sequence[NewTask], *, connection: Any = None) -> list[Task]:
        if connection is None and self.runtime is not None:
            return await self.runtime.submit(tasks)
        node = (
            self.runtime.config.node
            if self.runtime
            else f"client:{self.settings.get('node', 'app')}"
        )
        op = Submit(tasks, time.time(), node)
        if connection is not None:
            journal = self.runtime.journal if self.runtime else await self._client_journal()
            (outcome,) = await journal.run_in(connection, [op])
            in_transaction: list[Task] = outcome.unwrap()
            return in_transaction
        # With other callers' writes waiting meanwhile, in one commit (shared_commits).
        (outcome,) = await (await self._client_journal()).run([op])
        created: list[Task] = outcome.unwrap()
        return created

    async def get(self, task_id: str) -> Task:
        if self.runtime is not None:
            return await self.runtime.get(task_id)
        return await (await self._client_journal()).get(task_id)

    async def wait_for(
        self, task_id: str, states: Collection[TaskState] | None = None, *, timeout: float = 30.0
    ) -> Task:
        if self.runtime is None:
            raise ActorqError("wait_for needs a node running in this process (app.start())")
        return await self.runtime.wait_for(task_id, states, timeout=timeout)

    async def _client_journal(self) -> Journal:
        if self._journal is not None:
            return self._journal
        async with self._opening:
            if self._journal is None:
                journal = journal_from_url(self._client_config().database_url)
                await journal.open()
                self._journal = journal
            return self._journal


def _fresh(kept: tuple[float, T] | None) -> T | None:
    """A value a client App read (``(monotonic time read, value)``), unless it is stale."""
    if kept is not None and time.monotonic() - kept[0] < CLIENT_CACHE_SECONDS:
        return kept[1]
    return None
