"""The sla_alerts store: each breach alerts once (also from a new store), resolutions recorded, webhook and log."""

import datetime as dt
import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from mytrader_pipeline.core.alerts import AlertStore, log_line, notify, post_webhook, slack_payload
from mytrader_pipeline.core.sla import AlertType, Breach, Severity

T0 = dt.datetime(2025, 3, 10, 3, tzinfo=dt.UTC)


def minutes(n: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=n)


def run_breach(ongoing: bool = True, ended: dt.datetime | None = None) -> Breach:
    return Breach(
        AlertType.RUN_DURATION, Severity.HIGH, "run_duration:r1", "slow", 21.0, 20.0, "minutes", "CRYPTO", "r1",
        ongoing=ongoing, ended_at=ended,
    )  # fmt: skip


def rate_breach(measured: float = 0.5) -> Breach:
    return Breach(AlertType.ERROR_RATE, Severity.HIGH, "error_rate:runs", "failing", measured, 0.1, "ratio", once=False)


def test_a_breach_alerts_once_even_from_a_new_store(any_engine: sa.Engine) -> None:
    first = AlertStore(any_engine).sync([run_breach()], minutes(0))
    again = AlertStore(any_engine).sync([run_breach()], minutes(5))  # a restarted sensor

    assert [a.dedupe_key for a in first.raised] == ["run_duration:r1"]
    assert again.raised == [] and again.resolved == []
    [alert] = AlertStore(any_engine).list()
    assert (alert.first_seen, alert.last_seen, alert.active) == (minutes(0), minutes(5), True)
    assert (alert.alert_type, alert.severity, alert.market, alert.run_id) == ("run_duration", "high", "CRYPTO", "r1")
    assert (alert.measured_value, alert.threshold, alert.unit) == (21.0, 20.0, "minutes")


def test_recovery_resolves_and_an_ended_event_never_alerts_again(any_engine: sa.Engine) -> None:
    store = AlertStore(any_engine)
    store.sync([run_breach()], minutes(0))
    ended = store.sync([run_breach(ongoing=False, ended=minutes(7))], minutes(10))
    later = store.sync([run_breach(ongoing=False, ended=minutes(7))], minutes(15))

    assert [a.resolved_at for a in ended.resolved] == [minutes(7)]
    assert later.raised == [] and later.resolved == []
    assert len(store.list()) == 1 and store.list(active_only=True) == []


def test_a_breach_found_after_it_ended_is_stored_resolved(any_engine: sa.Engine) -> None:
    [alert] = AlertStore(any_engine).sync([run_breach(ongoing=False, ended=minutes(3))], minutes(10)).raised
    assert (alert.first_seen, alert.resolved_at, alert.resolution) == (
        minutes(10),
        minutes(3),
        "found after the breach ended",
    )


def test_a_condition_alerts_once_per_episode(any_engine: sa.Engine) -> None:
    store = AlertStore(any_engine)
    first = store.sync([rate_breach(0.5)], minutes(0))
    store.sync([rate_breach(0.6)], minutes(5))
    cleared = store.sync([], minutes(10))
    second = store.sync([rate_breach(0.4)], minutes(15))

    assert len(first.raised) == 1 and len(second.raised) == 1
    assert [a.resolved_at for a in cleared.resolved] == [minutes(10)]
    assert [a.measured_value for a in store.list()] == [0.4, 0.6]
    assert len(store.list(active_only=True)) == 1


def test_the_database_refuses_a_second_open_alert_of_a_scope(any_engine: sa.Engine) -> None:
    from mytrader_pipeline.core.db import sla_alerts

    AlertStore(any_engine).sync([rate_breach()], minutes(0))
    row = {
        "dedupe_key": "other", "scope": "error_rate:runs", "alert_type": "error_rate", "severity": "high",
        "measured_value": 1.0, "threshold": 0.1, "unit": "ratio", "message": "x", "first_seen": T0, "last_seen": T0,
    }  # fmt: skip
    with pytest.raises(sa.exc.IntegrityError), any_engine.begin() as conn:
        conn.execute(sa.insert(sla_alerts).values(**row))


def test_notify_logs_json_lines_and_posts_slack_payloads(sqlite_engine: sa.Engine) -> None:
    store = AlertStore(sqlite_engine)
    result = store.sync([run_breach()], minutes(0))
    lines: list[str] = []
    posted: list[tuple[str, dict[str, Any]]] = []

    errors = notify(store, result, webhook_url="http://hook", now=minutes(0), log=lines.append,
                    poster=lambda url, payload: posted.append((url, payload)))  # fmt: skip

    assert errors == []
    assert json.loads(lines[0])["event"] == "sla_alert_raised"
    assert json.loads(lines[0])["dedupe_key"] == "run_duration:r1"
    assert posted[0][0] == "http://hook" and "run_duration" in posted[0][1]["text"]
    assert store.list()[0].notified_at == minutes(0)


def test_a_failing_webhook_is_reported_not_raised(sqlite_engine: sa.Engine) -> None:
    store = AlertStore(sqlite_engine)
    result = store.sync([run_breach()], minutes(0))

    def refuse(url: str, payload: dict[str, Any]) -> None:
        raise OSError("connection refused")

    errors = notify(store, result, webhook_url="http://hook", now=minutes(0), log=lambda _: None, poster=refuse)
    assert errors and "connection refused" in errors[0]
    assert store.list()[0].notified_at is None


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()


def test_post_webhook_sends_slack_compatible_json(sqlite_engine: sa.Engine, webhook: tuple[str, list]) -> None:
    url, received = webhook
    [alert] = AlertStore(sqlite_engine).sync([run_breach()], minutes(0)).raised
    post_webhook(url, slack_payload(alert, "raised"))
    assert received[0]["text"].startswith(":rotating_light: SLA HIGH run_duration: slow")
    assert "resolved" in json.loads(json.dumps(slack_payload(alert, "resolved")))["text"]
    assert json.loads(log_line(alert, "resolved"))["event"] == "sla_alert_resolved"
