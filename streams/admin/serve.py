"""The policy log and the admin API, built from the settings (``thresholds``, ``admin-api``).

:func:`with_log` runs one read or change against a :class:`PolicyLog` started for the occasion;
:func:`serve_admin_api` runs the threshold administration API until interrupted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from kafka.errors import KafkaError

from streams.admin.policy_log import PolicyLog, PolicyLogError
from streams.kafka_security import KafkaSecurity
from streams.settings import Settings
from triage.alerts import AlertPolicy

logger = logging.getLogger(__name__)
T = TypeVar("T")


def default_policy(settings: Settings) -> AlertPolicy:
    """The policy in force where ``triage.config`` has none (from the worker settings)."""
    return AlertPolicy.single(settings.worker.alert_threshold, settings.worker.threshold_version)


def administered_hospitals(settings: Settings) -> tuple[str, ...]:
    """Hospitals whose policy may be changed here."""
    return settings.admin.hospitals or (settings.worker.hospital,)


def policy_log(settings: Settings, create_topics: bool = True) -> PolicyLog:
    """A policy log on the configured broker (for writers: topics created if missing)."""
    from streams.topics import ensure_topics

    security = KafkaSecurity.from_settings(settings.kafka)
    if create_topics:
        try:
            ensure_topics(
                settings.kafka.bootstrap_servers,
                settings.kafka.partitions,
                timeout_s=settings.admin.read_timeout_s,
                security=security,
            )
        except KafkaError as e:
            raise PolicyLogError(f"Kafka at {settings.kafka.bootstrap_servers}: {e!r}") from e
    return PolicyLog(
        settings.kafka.bootstrap_servers,
        default_policy(settings),
        administered_hospitals(settings),
        timeout_s=settings.admin.read_timeout_s,
        security=security,
        risk_model_path=settings.worker.risk_model_path,
    )


def with_log(
    settings: Settings, work: Callable[[PolicyLog], Awaitable[T]], writes: bool = False
) -> T:
    """Start a policy log, run ``work`` on it, stop it."""

    async def run() -> T:
        log = policy_log(settings, create_topics=writes)
        await log.start()
        try:
            return await work(log)
        finally:
            await log.stop()

    return asyncio.run(run())


def serve_admin_api(settings: Settings, port: int | None = None) -> None:
    """Run the admin API until interrupted (``ctriage admin-api``)."""
    from aiohttp import web

    from streams.admin.auth import TokenBook
    from streams.admin.http import build_app

    tokens = TokenBook(settings.admin.tokens)
    if not len(tokens):
        logger.warning("no admin tokens configured (CTRIAGE_ADMIN__TOKENS): every call gets 401")

    async def make_app() -> web.Application:
        log = policy_log(settings)
        await log.start()
        http = build_app(log, tokens, settings.worker.risk_model_path, settings.store.url)

        async def stop(_: web.Application) -> None:
            await log.stop()

        http.on_cleanup.append(stop)
        return http

    web.run_app(make_app(), host=settings.admin.host, port=port or settings.admin.port)
