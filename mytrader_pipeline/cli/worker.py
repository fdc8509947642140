"""``mytrader worker``: one Celery worker in the foreground, running the import steps (``MYTRADER_EXECUTOR=celery``)."""

from __future__ import annotations

import click

from mytrader_pipeline.markets import load_markets
from mytrader_pipeline.settings import get_settings

# Lazy for speed: the workers' Celery app (kombu's Redis transport, the Redis client) is imported by this command
# only, not by every other `mytrader` command.
DEFAULT_QUEUE = "dagster"  # dagster-celery's default queue; a market's `celery_queue` unless set otherwise


@click.command("worker")
@click.option("--name", required=True, metavar="NAME",
              help="The worker's Celery node name (NAME@host); unique per host.")  # fmt: skip
@click.option("--concurrency", type=click.IntRange(1, 256), default=None, metavar="K",
              help="Steps it runs at once, one process each (default: the number of cores).")  # fmt: skip
@click.option("--queue", "queues", multiple=True, metavar="Q",
              help="A queue it takes steps from (repeatable; default: dagster). A market's steps go to the queue "
                   "of its `celery_queue` in the registry.")  # fmt: skip
@click.option("--loglevel", default="INFO", show_default=True, help="Celery's log level.")
def worker_command(name: str, concurrency: int | None, queues: tuple[str, ...], loglevel: str) -> int:
    """Start one Celery worker for the import steps, in the foreground.

    It runs the project's code with this environment (MYTRADER_DATABASE_URL, MYTRADER_DATA_ROOT, DAGSTER_* ...:
    give it the deployment's), takes steps from MYTRADER_CELERY_BROKER_URL and logs each one it runs. Stop it
    with Ctrl-C (it finishes its steps) or SIGTERM.
    """
    settings = get_settings()
    known = {m.celery_queue for m in load_markets(settings.markets_file)} | {DEFAULT_QUEUE}
    for queue in queues:
        if queue not in known:
            click.echo(f"warning: no market's celery_queue is {queue!r} (known: {', '.join(sorted(known))})", err=True)
    from mytrader_pipeline.defs.celery_worker import worker_app

    argv = [
        "worker",
        f"--hostname={name}@%h",
        f"--loglevel={loglevel}",
        "--prefetch-multiplier=1",  # a worker holds no steps it is not running: they stay free for the others
    ]
    if concurrency is not None:
        argv.append(f"--concurrency={concurrency}")
    worker_app(queues or (DEFAULT_QUEUE,), settings).worker_main(argv)
    return 0


def register(group: click.Group) -> None:
    """Add this module's commands to the ``mytrader`` group."""
    group.add_command(worker_command)
