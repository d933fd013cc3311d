#!/usr/bin/env bash
# Makes sure the local PostgreSQL and RabbitMQ the system and its tests use are up and
# answering, starting them if they are stopped. It never stops or restarts them.
set -euo pipefail

wait_for() {
    local what=$1 seconds=$2
    shift 2
    for _ in $(seq 1 "$seconds"); do
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        sleep 1
    done
    echo "$what did not come up within ${seconds}s" >&2
    return 1
}

if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
    echo "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start || true
fi
wait_for PostgreSQL 60 pg_isready -h 127.0.0.1 -p 5432 -q

if ! rabbitmqctl -q status >/dev/null 2>&1; then
    echo "starting RabbitMQ"
    rabbitmq-server -detached || true
    rabbitmqctl wait --timeout 120 "/var/lib/rabbitmq/mnesia/rabbit@$(hostname -s).pid" || true
fi
wait_for RabbitMQ 120 rabbitmqctl -q await_startup
# A node that has started may still refuse connections for a moment.
wait_for "RabbitMQ port 5672" 30 bash -c 'exec 3<>/dev/tcp/127.0.0.1/5672'
