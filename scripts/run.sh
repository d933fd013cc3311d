#!/usr/bin/env bash
# Runs the whole pipeline on this machine, without Docker:
#
#   gateway -> nginx 127.0.0.1:8080 -> ingest 127.0.0.1:8091 | 127.0.0.1:8092
#           -> RabbitMQ -> processor (health on 127.0.0.1:8081) -> PostgreSQL
#
# In order, it
#   1. starts the machine's PostgreSQL and RabbitMQ if they do not answer (it never stops
#      them; starting them needs root, as pg_ctlcluster and rabbitmq-server do);
#   2. builds the release binaries;
#   3. installs nginx with apt-get if it is missing;
#   4. starts the processor, two ingest replicas and a private nginx balancing between
#      them, and waits until each one is ready;
#   5. stays in the foreground until Ctrl-C or SIGTERM, then stops what it started.
# If one of the processes it started exits on its own, it stops the others and fails.
#
# The gateway's notifyUrl is http://127.0.0.1:$LB_PORT/dlr. Logs go to $RUN_DIR.
#
# Environment, with defaults:
#   LB_PORT=8080  INGEST1_PORT=8091  INGEST2_PORT=8092  PROCESSOR_PORT=8081
#   RUN_DIR=target/run          logs, nginx's configuration and its temporary files
#   READY_TIMEOUT_SECS=60       longest wait for the services to become ready
#   STOP_TIMEOUT_SECS=15        longest wait for them to stop before they are killed
#   DATABASE_URL=postgres://postgres@127.0.0.1/dlr
#   AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f
# Every other variable of the services (GATEWAY_TZ, AMQP_QUEUE, BATCH_SIZE, RUST_LOG, ...;
# see .env.example) is passed through unchanged. INGEST_LISTEN and PROCESSOR_LISTEN are
# set from the ports above.

set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

LB_PORT=${LB_PORT:-8080}
INGEST1_PORT=${INGEST1_PORT:-8091}
INGEST2_PORT=${INGEST2_PORT:-8092}
PROCESSOR_PORT=${PROCESSOR_PORT:-8081}
RUN_DIR=${RUN_DIR:-$repo_root/target/run}
READY_TIMEOUT_SECS=${READY_TIMEOUT_SECS:-60}
STOP_TIMEOUT_SECS=${STOP_TIMEOUT_SECS:-15}

export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1/dlr}
export AMQP_URL=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}

# Ingest refuses to start without a secret. A local run with none configured opens the
# endpoint explicitly, and says so; set DLR_TOKENS to try authentication.
if [ -z "${DLR_TOKENS:-}${DLR_TOKENS_FILE:-}${DLR_SIGNING_SECRETS:-}${DLR_AUTH:-}" ]; then
    export DLR_AUTH=none
    echo "[run] no DLR_TOKENS set: ingest accepts reports without a token (DLR_AUTH=none)"
fi

host=127.0.0.1
target_dir=${CARGO_TARGET_DIR:-$repo_root/target}
nginx_dir=$RUN_DIR/nginx

# Names and PIDs of the processes this script started, in start order.
started_names=()
started_pids=()

log() {
    printf '[run %s] %s\n' "$(date +%H:%M:%S)" "$*"
}

die() {
    log "error: $*" >&2
    exit 1
}

# The URL with any password replaced, for printing.
redact() {
    sed -E 's#(://[^:/@]+):[^@]*@#\1:***@#' <<<"$1"
}

# Succeeds when something accepts TCP connections on host $1, port $2.
port_open() {
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

# Runs "$@" once a second until it succeeds; fails after $2 seconds, naming $1.
wait_until() {
    local what=$1 timeout=$2
    shift 2
    local deadline=$((SECONDS + timeout))
    until "$@"; do
        if ((SECONDS >= deadline)); then
            die "$what did not answer within ${timeout}s"
        fi
        sleep 1
    done
}

# Succeeds while the process is running (not gone, and not a zombie waiting to be reaped).
running() {
    local state
    state=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    [[ -n $state && $state != Z* ]]
}

# ---- Stopping -----------------------------------------------------------------------

# Stops everything this script started, newest first, so that nginx stops taking reports
# before the replicas behind it go, and the processor finishes its batch last.
stop_started() {
    local i
    for ((i = ${#started_pids[@]} - 1; i >= 0; i--)); do
        if running "${started_pids[i]}"; then
            log "stopping ${started_names[i]} (pid ${started_pids[i]})"
            kill -TERM "${started_pids[i]}" 2>/dev/null || true
        fi
    done

    local deadline=$((SECONDS + STOP_TIMEOUT_SECS))
    for ((i = 0; i < ${#started_pids[@]}; i++)); do
        while running "${started_pids[i]}" && ((SECONDS < deadline)); do
            sleep 0.2
        done
        if running "${started_pids[i]}"; then
            log "${started_names[i]} did not stop within ${STOP_TIMEOUT_SECS}s; killing it"
            kill -KILL "${started_pids[i]}" 2>/dev/null || true
        fi
    done

    # Reap them, so none is left as a zombie.
    wait 2>/dev/null || true
    started_pids=()
    started_names=()
}

on_exit() {
    local status=$?
    trap - EXIT INT TERM
    if ((${#started_pids[@]} > 0)); then
        stop_started
        log "stopped"
    fi
    exit "$status"
}

# A requested stop is a clean exit; on_exit does the stopping.
trap on_exit EXIT
trap 'log "interrupted"; exit 0' INT
trap 'log "terminated"; exit 0' TERM

# ---- Checks before starting anything -------------------------------------------------

for port in "$LB_PORT" "$INGEST1_PORT" "$INGEST2_PORT" "$PROCESSOR_PORT"; do
    if port_open "$host" "$port"; then
        die "port $port on $host is already in use (an earlier run still going?)"
    fi
done

# ---- 1. PostgreSQL and RabbitMQ ------------------------------------------------------

if ! pg_isready -q -d "$DATABASE_URL"; then
    pg_version=$(find /etc/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null \
        | sort -V | tail -n 1)
    [[ -n $pg_version ]] || die "PostgreSQL does not answer and no cluster is installed"
    log "starting PostgreSQL $pg_version"
    pg_ctlcluster --skip-systemctl-redirect "$pg_version" main start \
        || log "pg_ctlcluster failed; waiting for PostgreSQL anyway"
    wait_until "PostgreSQL" 60 pg_isready -q -d "$DATABASE_URL"
fi
log "PostgreSQL answers at $(redact "$DATABASE_URL")"

# Host and port of the broker, from amqp://user:password@host:port/vhost.
amqp_authority=${AMQP_URL#*://}
amqp_authority=${amqp_authority##*@}
amqp_authority=${amqp_authority%%[/?]*}
amqp_host=${amqp_authority%%:*}
amqp_port=5672
if [[ $amqp_authority == *:* ]]; then
    amqp_port=${amqp_authority##*:}
fi

# RabbitMQ opens its AMQP port once it has booted, so an open port means it is ready.
if ! port_open "$amqp_host" "$amqp_port"; then
    log "starting RabbitMQ"
    rabbitmq-server -detached
    wait_until "RabbitMQ" 120 port_open "$amqp_host" "$amqp_port"
fi
log "RabbitMQ answers at $(redact "$AMQP_URL")"

# ---- 2. Build ------------------------------------------------------------------------

log "building the release binaries"
cargo build --release --bins
processor_bin=$target_dir/release/processor
ingest_bin=$target_dir/release/ingest

# ---- 3. nginx ------------------------------------------------------------------------

find_nginx() {
    command -v nginx || { [[ -x /usr/sbin/nginx ]] && echo /usr/sbin/nginx; }
}

if ! nginx_bin=$(find_nginx); then
    log "installing nginx"
    sudo=()
    if ((EUID != 0)); then
        command -v sudo >/dev/null || die "nginx is missing; install it, or run as root"
        sudo=(sudo)
    fi
    "${sudo[@]}" apt-get update
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends nginx
    nginx_bin=$(find_nginx) || die "nginx is still missing after installing it"
fi

# ---- 4. Start everything -------------------------------------------------------------

mkdir -p "$RUN_DIR" "$nginx_dir/logs" "$nginx_dir/tmp"

# Starts "$@" in the background as $1, its output in $RUN_DIR/$1.log.
start() {
    local name=$1
    shift
    "$@" >"$RUN_DIR/$name.log" 2>&1 &
    started_names+=("$name")
    started_pids+=("$!")
    log "started $name (pid $!, log $RUN_DIR/$name.log)"
}

# The processor first: it creates the database and runs the migrations.
start processor env PROCESSOR_LISTEN="$host:$PROCESSOR_PORT" "$processor_bin"
start ingest1 env INGEST_LISTEN="$host:$INGEST1_PORT" "$ingest_bin"
start ingest2 env INGEST_LISTEN="$host:$INGEST2_PORT" "$ingest_bin"

sed -e "s|@LISTEN@|$host:$LB_PORT|" \
    -e "s|@INGEST1@|$host:$INGEST1_PORT|" \
    -e "s|@INGEST2@|$host:$INGEST2_PORT|" \
    deploy/nginx.local.conf.template >"$nginx_dir/nginx.conf"
nginx_args=(-p "$nginx_dir/" -c "$nginx_dir/nginx.conf" -e "$nginx_dir/logs/error.log")
"$nginx_bin" -t -q "${nginx_args[@]}" || die "nginx rejected $nginx_dir/nginx.conf"
start nginx "$nginx_bin" "${nginx_args[@]}" -g 'daemon off;'

# Waits until every URL answers 200, failing early if a process has exited.
wait_ready() {
    local deadline=$((SECONDS + READY_TIMEOUT_SECS))
    local url i
    for url in "$@"; do
        until curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; do
            for ((i = 0; i < ${#started_pids[@]}; i++)); do
                if ! running "${started_pids[i]}"; then
                    tail -n 20 "$RUN_DIR/${started_names[i]}.log" >&2 || true
                    die "${started_names[i]} exited while starting (log above)"
                fi
            done
            if ((SECONDS >= deadline)); then
                die "$url did not answer 200 within ${READY_TIMEOUT_SECS}s; see $RUN_DIR"
            fi
            sleep 0.5
        done
        log "ready: $url"
    done
}

wait_ready \
    "http://$host:$PROCESSOR_PORT/readyz" \
    "http://$host:$INGEST1_PORT/readyz" \
    "http://$host:$INGEST2_PORT/readyz" \
    "http://$host:$LB_PORT/readyz"

cat <<EOF

The pipeline is running. Logs are in $RUN_DIR.

  notifyUrl (nginx)  http://$host:$LB_PORT/dlr    access log $nginx_dir/logs/access.log
  ingest replica 1   http://$host:$INGEST1_PORT
  ingest replica 2   http://$host:$INGEST2_PORT
  processor          http://$host:$PROCESSOR_PORT/readyz
  RabbitMQ           $(redact "$AMQP_URL")
  PostgreSQL         $(redact "$DATABASE_URL")

Send a report:

  curl -s "http://$host:$LB_PORT/dlr?msgid=demo-1&mno=%2B35799123456&sid=ACME&status=DELIVRD&datetime=2026-12-03+10:00:00"

Press Ctrl-C to stop.

EOF

# ---- 5. Stay until told to stop -------------------------------------------------------

# `wait -n` returns when one of the processes exits, or at once when a signal arrives
# (the traps above then stop everything).
while true; do
    wait -n "${started_pids[@]}" || true
    for ((i = 0; i < ${#started_pids[@]}; i++)); do
        if ! running "${started_pids[i]}"; then
            tail -n 20 "$RUN_DIR/${started_names[i]}.log" >&2 || true
            die "${started_names[i]} exited unexpectedly (log above); stopping the rest"
        fi
    done
done
