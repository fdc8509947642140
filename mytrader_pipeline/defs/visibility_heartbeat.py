"""``mytrader worker``'s visibility heartbeat on a Redis broker: a step a live worker holds is not handed out again."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import celery
import celery.bootsteps
import celery.utils.log
import celery.worker.state
import kombu
import kombu.transport.redis

_LOG = celery.utils.log.get_logger("mytrader.worker.visibility")

RETRY_SECONDS = 1.0  # after a failed refresh: soon, so a Redis back from an outage sees the steps confirmed again


def held_delivery_tags() -> list[str]:
    """The broker's delivery tags of the steps this worker holds: reserved (prefetched) or running.

    ``celery.worker.state.requests`` is the worker's own table of them (entered on reserve, left when the task is
    ready), filled by the main process; copied in one C-level call, so a thread reads it whole.
    """
    requests = tuple(celery.worker.state.requests.values())
    tags = []
    for request in requests:
        tag = getattr(getattr(request, "message", None), "delivery_tag", None)
        if tag is not None:
            tags.append(str(tag))
    return tags


def refresh_held(channel: kombu.transport.redis.Channel, tags: list[str]) -> int:
    """Give ``tags`` now's time in kombu's ``unacked_index``, so ``restore_visible`` leaves them there.

    ``XX`` touches only members still in the index: a step acknowledged (its member removed) in the meantime is
    not put back. The channel's client adds the ``global_keyprefix``, and its ``unacked_index_key`` follows the
    transport options, as for kombu's own ``QoS.append``. Returns how many members it refreshed.
    """
    if not tags:
        return 0
    now = time.time()
    return int(channel.client.zadd(channel.unacked_index_key, dict.fromkeys(tags, now), xx=True, ch=True))


def uses_redis(app: celery.Celery) -> bool:
    """Whether ``app``'s broker is Redis (or Redis Sentinel): the transport that redelivers by ``unacked_index``."""
    with app.connection_for_read() as connection:
        return isinstance(connection.transport, kombu.transport.redis.Transport)


class VisibilityHeartbeat(celery.bootsteps.StartStopStep):
    """Every quarter of the broker's ``visibility_timeout``, confirm on Redis the steps this worker holds.

    kombu's Redis transport emulates acknowledgements: a message handed to a worker is kept in ``unacked_index``
    with the time it was handed out, and any worker's periodic ``restore_visible`` puts back in its queue each one
    older than ``visibility_timeout``, as if its worker were lost. That gives a SIGKILLed worker's step back, but
    also a step that simply runs longer than the timeout, to a second worker while the first still runs it. This
    step's daemon thread, in the worker's main process (its pool's processes have no broker connection), refreshes
    the time of the messages the worker holds, so a live worker's step is never restored however long it runs,
    while a killed worker's stops being refreshed and comes back after the timeout. A Redis error is logged and
    the refresh retried soon after; on another broker the step does nothing.
    """

    label = "visibility heartbeat"
    requires = ("celery.worker.components:Pool",)  # started after the pool has forked its processes

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, parent: Any) -> None:
        app: celery.Celery = parent.app
        if not uses_redis(app):
            return
        timeout = float(
            (app.conf.broker_transport_options or {}).get(
                "visibility_timeout", kombu.transport.redis.Channel.visibility_timeout
            )
        )
        self._thread = threading.Thread(
            target=self._beat, args=(app, timeout / 4), name="visibility-heartbeat", daemon=True
        )
        self._thread.start()
        _LOG.info("visibility heartbeat: confirming held steps every %.1f s (visibility timeout %.0f s)",
                  timeout / 4, timeout)  # fmt: skip

    def stop(self, parent: Any) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _beat(self, app: celery.Celery, interval: float) -> None:
        connection: kombu.Connection | None = None
        wait = interval
        while not self._stopped.wait(wait):
            try:
                if connection is None:
                    connection = app.connection_for_read()
                tags = held_delivery_tags()
                refreshed = refresh_held(connection.default_channel, tags)
                _LOG.debug("visibility heartbeat: %d of %d held step(s) confirmed", refreshed, len(tags))
                wait = interval
            except Exception:  # a transient Redis error must not end the heartbeat: log it, reconnect, go on
                _LOG.warning("visibility heartbeat: could not confirm the held steps on Redis; retrying", exc_info=True)
                if connection is not None:
                    with contextlib.suppress(Exception):  # broken already; a new one is made on the next try
                        connection.release()
                connection = None
                wait = min(interval, RETRY_SECONDS)
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.release()
