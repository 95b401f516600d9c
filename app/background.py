"""The work a process does besides answering requests: the outbox relay, the consumers and the
periodic jobs, each a task owned by one cleanup context that stops them on shutdown."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import AsyncIterator, Callable

from aiohttp import web

from app.clients import kafka_producer_key
from handlers.context import config_key, pool_key, redis_key
from jobs.events import (
    Consumer, DeadLetterReplayer, Dispatcher, InlineSender, KafkaConsumerRunner, KafkaSender, Relay,
)
from jobs.periodic import Job, run_jobs
from storage import outbox

log = logging.getLogger("glint.background")


@dataclass
class Background:
    """What runs in the background of this process, and the handles tests and ops use."""

    run_consumers: bool
    consumers: list[Consumer] = field(default_factory=list)
    jobs: list[Job] = field(default_factory=list)
    relay: Relay | None = None
    dispatcher: Dispatcher | None = None
    replayer: DeadLetterReplayer | None = None
    runners: list[KafkaConsumerRunner] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task] = field(default_factory=list)


background_key = web.AppKey("background", Background)

# Builders of the consumers and jobs every process runs; domain modules add theirs in app/main.py.
ConsumerFactory = Callable[[web.Application], list[Consumer]]
JobFactory = Callable[[web.Application], list[Job]]


def platform_jobs(app: web.Application) -> list[Job]:
    """Jobs of the platform itself."""
    pool = app[pool_key]

    async def prune_outbox() -> int:
        return await outbox.prune_sent(pool, 7)

    return [Job("prune_outbox", 3600, prune_outbox)]


def background_ctx(consumer_factories: list[ConsumerFactory], job_factories: list[JobFactory]):
    """A cleanup context that starts the relay, the consumers and the jobs, and stops them."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        config = app[config_key]
        bg = app[background_key]
        pool = app[pool_key]
        if bg.run_consumers:
            bg.consumers = [c for factory in consumer_factories for c in factory(app)] + bg.consumers
            if config.jobs.enabled:
                bg.jobs = [j for factory in job_factories for j in factory(app)] + bg.jobs
        events = config.events
        bg.dispatcher = Dispatcher(pool, bg.consumers, events.consumer_max_attempts, events.consumer_retry_base_seconds,
                                   replay_base=events.dead_letter_replay_base_seconds)
        if config.events.transport == "kafka":
            sender = KafkaSender(app[kafka_producer_key], config.events.kafka_topic_prefix)
            bg.runners = [
                KafkaConsumerRunner(c, bg.dispatcher, config.events.kafka_bootstrap, config.events.kafka_topic_prefix,
                                    config.events.kafka_group_prefix)
                for c in bg.consumers
            ]
        else:
            sender = InlineSender(bg.dispatcher)
        # an inline relay is the consumers' only feed, so it runs only where they do
        if config.events.transport == "kafka" or bg.run_consumers:
            bg.relay = Relay(pool, sender, config.events.outbox_batch, config.events.outbox_poll_seconds)
            bg.tasks.append(asyncio.create_task(bg.relay.run(bg.stop), name="outbox-relay"))
        if bg.consumers:
            bg.replayer = DeadLetterReplayer(bg.dispatcher, config.events.dead_letter_poll_seconds,
                                             config.events.dead_letter_replay_max_seconds)
            bg.tasks.append(asyncio.create_task(bg.replayer.run(bg.stop), name="dead-letter-replayer"))
        for runner in bg.runners:
            bg.tasks.append(asyncio.create_task(runner.run(bg.stop), name=f"consumer-{runner.consumer.name}"))
        if bg.jobs:
            bg.tasks.append(asyncio.create_task(run_jobs(app[redis_key], bg.jobs, bg.stop), name="jobs"))
        yield
        bg.stop.set()
        done, pending = await asyncio.wait(bg.tasks, timeout=config.server.shutdown_timeout) if bg.tasks else (set(), set())
        for task in pending:
            task.cancel()
        for task in [*done, *pending]:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:
                log.exception("background task %s failed", task.get_name())

    return ctx
