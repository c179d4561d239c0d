# Shared by scripts/run and scripts/test (sourced, never run on its own).
#
# Each ensure_* step makes one thing true or says clearly why it cannot:
# a Python >= 3.11 virtualenv in .venv, the pinned packages, the front-end
# files, a Redis that answers, Chromium for the browser tests. Missing system
# packages are installed with apt-get when we are root (or have password-less
# sudo); nothing else is downloaded.
#
# Switches (environment):
#   SIGHTLINE_APT=0            never run apt-get; print what to install instead
#   SIGHTLINE_PROBE_POSTGRES=0 scripts/test: do not look for PostgreSQL on 127.0.0.1:5432
#   SIGHTLINE_BROWSER_TESTS=0  scripts/test: skip the browser tests (said loudly)
#   SIGHTLINE_MULTIHOST_TESTS=0 scripts/test: skip tests/multihost (network namespaces; said loudly)
#   PYTHON=/path/to/python3    the interpreter to build .venv from

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
PROBE="$ROOT/scripts/lib/probe.py"
APT_LOG="$ROOT/var/log/apt.log"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
# This checkout's agent package (sightline_agent: the agent and the wire protocol) first, also when
# the .venv's editable install of ./agent (requirements.txt) points at another checkout.
export PYTHONPATH="$ROOT/agent${PYTHONPATH:+:$PYTHONPATH}"

if [ -t 1 ]; then _B=$'\033[1m' _R=$'\033[0m' _Y=$'\033[33m' _E=$'\033[31m'; else _B="" _R="" _Y="" _E=""; fi
say()  { printf '%s[sightline]%s %s\n' "$_B" "$_R" "$*"; }
warn() { printf '%s[sightline] WARNING:%s %s\n' "$_Y" "$_R" "$*" >&2; }
die()  { printf '%s[sightline] ERROR:%s %s\n' "$_E" "$_R" "$*" >&2; exit 1; }
loud() {
    local line="################################################################################"
    printf '%s%s\n' "$_Y" "$line" >&2
    local text; for text in "$@"; do printf '#  %s\n' "$text" >&2; done
    printf '%s%s\n' "$line" "$_R" >&2
}
redact_url() { sed -E 's#//[^/@]*@#//***@#' <<<"$1"; }

# -- system packages ------------------------------------------------------------
_APT_UPDATED=0
can_install() {
    [ "${SIGHTLINE_APT:-1}" != 0 ] || return 1
    command -v apt-get >/dev/null 2>&1 || return 1
    [ "$(id -u)" = 0 ] && return 0
    command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null
}
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }
apt_install() {
    say "installing Debian packages: $* (apt-get; output in ${APT_LOG#"$ROOT"/})"
    mkdir -p "$(dirname "$APT_LOG")"
    export DEBIAN_FRONTEND=noninteractive
    if [ "$_APT_UPDATED" = 0 ]; then
        as_root apt-get update -q >>"$APT_LOG" 2>&1 || warn "apt-get update failed; trying the install anyway"
        _APT_UPDATED=1
    fi
    if ! as_root apt-get install -y -q --no-install-recommends "$@" </dev/null >>"$APT_LOG" 2>&1; then
        tail -n 20 "$APT_LOG" >&2
        warn "apt-get install $* failed (full output in $APT_LOG)"
        return 1
    fi
}

# -- Python ---------------------------------------------------------------------
_python_ok() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; }
find_python() {
    local candidate
    for candidate in "${PYTHON:-}" python3 python3.11 python3.12 python3.13; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 && _python_ok "$candidate"; then
            command -v "$candidate"
            return 0
        fi
    done
    die "Python 3.11 or newer is needed (Debian 12: apt-get install python3). Set PYTHON=/path/to/python3 to choose one."
}

ensure_venv() {
    if [ -x "$PY" ] && _python_ok "$PY" && "$PY" -m pip --version >/dev/null 2>&1; then
        return 0
    fi
    local base; base="$(find_python)"
    say "creating the virtualenv .venv with $base"
    rm -rf "$VENV"
    if ! "$base" -m venv "$VENV" >/dev/null 2>&1; then
        rm -rf "$VENV"
        local minor; minor="$("$base" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
        if can_install; then
            say "'$base -m venv' failed: Debian keeps venv in a separate package"
            apt_install python3-venv "python$minor-venv" || apt_install python3-venv
            "$base" -m venv "$VENV" || die "could not create .venv even after installing python3-venv"
        else
            die "'$base -m venv' failed. Install the venv module (as root: apt-get install python3-venv python$minor-venv) and run this again."
        fi
    fi
    "$PY" -m pip --version >/dev/null 2>&1 || die ".venv has no pip; remove .venv and run this again"
}

# Install a requirements file unless the same file set was installed already.
ensure_requirements() {
    local file="$1" stamp="$VENV/.installed-$(basename "$1").sha256" wanted
    wanted="$(cat requirements.txt "$file" agent/pyproject.toml | sha256sum | cut -d' ' -f1) $("$PY" -V 2>&1)"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
        say "Python packages: $file unchanged since the last install"
        return 0
    fi
    say "Python packages: installing $file into .venv (the first time takes a few minutes)"
    "$PY" -m pip install --quiet --requirement "$file" </dev/null || die "pip install -r $file failed (see above)"
    printf '%s\n' "$wanted" >"$stamp"
}

# -- front end ------------------------------------------------------------------
# The front-end engineer's scripts/build-frontend runs `npm ci` from
# package-lock.json and copies hls.js into frontend/static/vendor/. We make sure
# npm exists first.
ensure_frontend() {
    [ -f package-lock.json ] || return 0
    if ! command -v npm >/dev/null 2>&1; then
        if can_install; then
            apt_install nodejs npm
        else
            loud "npm is missing, so the front-end files (hls.js) are not installed:" \
                 "recorded playback in the browser will not work." \
                 "Install them as root: apt-get install nodejs npm -- then run this again."
            return 0
        fi
    fi
    if [ -f scripts/build-frontend ]; then
        bash scripts/build-frontend || die "scripts/build-frontend failed (see above)"
    else
        npm ci --no-audit --no-fund --loglevel=error </dev/null || die "npm ci failed"
    fi
}

# -- Redis ----------------------------------------------------------------------
# Use REDIS_URL if it answers; otherwise start a private redis-server on a free
# port, installing it first if needed. Sets REDIS_URL and REDIS_ORIGIN.
PRIVATE_REDIS_PID=""
ensure_redis() {
    local data_dir="$1" log_file="$2" url="${REDIS_URL:-redis://127.0.0.1:6379/0}"
    if "$PY" "$PROBE" redis "$url"; then
        export REDIS_URL="$url"
        REDIS_ORIGIN="$(redact_url "$url") (already running)"
        say "Redis: using $REDIS_ORIGIN"
        return 0
    fi
    say "Redis: nothing answers at $(redact_url "$url"); starting a private redis-server"
    if ! command -v redis-server >/dev/null 2>&1; then
        if can_install; then
            apt_install redis-server
        else
            die "Redis is needed (channel layer, Celery broker, cache) and redis-server is not installed. As root: apt-get install redis-server -- or set REDIS_URL to a Redis that answers."
        fi
    fi
    local port; port="$("$PY" "$PROBE" free-port)"
    mkdir -p "$data_dir" "$(dirname "$log_file")"
    redis-server --bind 127.0.0.1 --port "$port" --dir "$data_dir" --save "" --appendonly no \
        --daemonize no --logfile "$log_file" </dev/null >/dev/null 2>&1 &
    PRIVATE_REDIS_PID=$!
    export REDIS_URL="redis://127.0.0.1:$port/0"
    local deadline=$((SECONDS + 20))
    until "$PY" "$PROBE" redis "$REDIS_URL"; do
        kill -0 "$PRIVATE_REDIS_PID" 2>/dev/null || die "redis-server exited at start; see $log_file"
        [ "$SECONDS" -lt "$deadline" ] || die "redis-server did not answer within 20s; see $log_file"
        sleep 0.2
    done
    REDIS_ORIGIN="private redis-server on 127.0.0.1:$port (pid $PRIVATE_REDIS_PID, log $log_file)"
    say "Redis: started a $REDIS_ORIGIN"
}

stop_private_redis() {
    if [ -n "$PRIVATE_REDIS_PID" ] && kill -0 "$PRIVATE_REDIS_PID" 2>/dev/null; then
        kill "$PRIVATE_REDIS_PID" 2>/dev/null || true
        wait "$PRIVATE_REDIS_PID" 2>/dev/null || true
    fi
    PRIVATE_REDIS_PID=""
}
