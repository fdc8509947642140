# Sourced: make sure RabbitMQ (127.0.0.1:5672) and Redis (127.0.0.1:6379) run, for the Celery tests; start them if not.
# Already up: nothing happens. Not installed: a warning, and the tests that need them fail with a clear message.
if command -v rabbitmqctl >/dev/null 2>&1; then
  if ! rabbitmqctl -q status >/dev/null 2>&1; then
    echo "RabbitMQ is down: starting it" >&2
    service rabbitmq-server start >/dev/null 2>&1 || rabbitmq-server -detached
    for _ in $(seq 1 60); do rabbitmqctl -q status >/dev/null 2>&1 && break; sleep 1; done
    rabbitmqctl -q status >/dev/null
  fi
else
  echo "warning: RabbitMQ is not installed; the Celery tests will fail" >&2
fi
if command -v redis-server >/dev/null 2>&1; then
  if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    echo "Redis is down: starting it" >&2
    service redis-server start >/dev/null 2>&1 || redis-server --bind 127.0.0.1 --port 6379 --daemonize yes >/dev/null
    for _ in $(seq 1 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 1; done
    redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null
  fi
else
  echo "warning: Redis is not installed; the Celery tests will fail" >&2
fi
