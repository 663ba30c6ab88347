# shellcheck shell=bash
# RES and CONNS are associative arrays the sourcing script declares, LIST_TOKEN one it
# fills, and R_* are results for it: shellcheck cannot see them from here.
# shellcheck disable=SC2004,SC2034,SC2153,SC2154
# bench/lib.sh — used by bench/go (bench/run, now Python, no longer sources it): cleanup of every
# process and temp dir a script starts, tool installation, the release build, the fake
# GitLab upstream, packrat, nginx, wrk runs with CPU/RSS accounting, and verdicts.
#
# Source it (after `set -euo pipefail`) once these are set:
#   ROOT                  the repository
#   BENCH_NAME            the script's name, for messages (bench/run, bench/go)
#   BENCH_SECONDS BENCH_WARMUP_SECONDS BENCH_THREADS BENCH_ROUNDS BENCH_QUIET_WAIT
#   BENCH_RETRIES BENCH_NGINX_WORKERS BENCH_PACKRAT_LOG BENCH_SKIP_BUILD BENCH_KEEP
#   BENCH_FAKE_GITLAB     the knobs each script documents
# Sourcing installs the EXIT/INT/TERM traps. Files live under $WORK (make_work creates it):
#   $WORK/lists/<server>-<scenario>   request paths for wrk, one a line (server: packrat, nginx)
#                                     LIST_TOKEN[<scenario>], if set, is sent with each of them
#                                     (to both servers) as PRIVATE-TOKEN; unset = anonymous
#   $WORK/www                         nginx's root
#   $WORK/fake.*, packrat.*, nginx/   logs

PACKRAT_BIN=$ROOT/target/release/packrat
OUT_DIR=$ROOT/bench/out
LUA=$ROOT/bench/rotate.lua
declare -A LIST_TOKEN=()   # list -> the PRIVATE-TOKEN its requests carry (none = anonymous)

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '%s: %s\n' "$BENCH_NAME" "$*" >&2; exit 1; }

# check_whole_numbers VAR... : each must hold a whole number
check_whole_numbers() {
    local v
    for v in "$@"; do
        [[ ${!v} =~ ^[0-9]+$ ]] || { echo "$BENCH_NAME: $v must be a whole number, got '${!v}'" >&2; exit 2; }
    done
}

# --------------------------------------------------------------------------- cleanup

WORK=""
PIDS=()          # every background process this script started, killed on exit
POLICY_RC_CREATED=0
CLEANUP_HOOKS=() # commands run by cleanup before the temp dir goes (e.g. chmod a read-only tree)

forget_pid() {
    local keep=() p
    for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local pid hook
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        # give each up to ~5 s to exit gracefully, then kill it
        local n=0
        while kill -0 "$pid" 2>/dev/null && ((n < 50)); do sleep 0.1; n=$((n + 1)); done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if ((POLICY_RC_CREATED)); then "${SUDO[@]}" rm -f /usr/sbin/policy-rc.d; fi
    for hook in "${CLEANUP_HOOKS[@]}"; do eval "$hook" || true; done
    if [[ -n $WORK && -d $WORK ]]; then
        # Kept for a look when asked, or when the run failed (not when interrupted).
        if [[ $BENCH_KEEP == 1 ]] || ((rc != 0 && rc != 130 && rc != 143)); then
            log "kept $WORK (logs: fake.err, packrat.log, nginx/error.log)"
        else
            rm -rf "$WORK"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --------------------------------------------------------------------------- tools

SUDO=()
if [[ $(id -u) -ne 0 ]]; then SUDO=(sudo); fi

find_nginx() { command -v nginx 2>/dev/null || { [[ -x /usr/sbin/nginx ]] && echo /usr/sbin/nginx; } || true; }

apt_install() {
    # Debian's nginx postinst starts the system service (port 80 on all interfaces); a
    # policy-rc.d that answers 101 stops that, as in containers. Only ours is removed.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee /usr/sbin/policy-rc.d >/dev/null
        "${SUDO[@]}" chmod 755 /usr/sbin/policy-rc.d
        POLICY_RC_CREATED=1
    fi
    local ok=0
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2 && ok=1
    if ((!ok)); then
        log "apt-get install $* failed; running apt-get update once and retrying"
        "${SUDO[@]}" apt-get update -q >&2 || true
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2 && ok=1
    fi
    if ((POLICY_RC_CREATED)); then "${SUDO[@]}" rm -f /usr/sbin/policy-rc.d; POLICY_RC_CREATED=0; fi
    ((ok))
}

# ensure_tools [COMMAND:PACKAGE]... : curl, jq, wrk and nginx, plus the extra commands
# given (e.g. go:golang-go), installed with apt-get when missing. Sets NGINX.
ensure_tools() {
    local missing=() extra
    command -v curl >/dev/null || missing+=(curl)
    command -v jq >/dev/null || missing+=(jq)
    command -v wrk >/dev/null || missing+=(wrk)
    [[ -n $(find_nginx) ]] || missing+=(nginx-light)
    for extra in "$@"; do command -v "${extra%%:*}" >/dev/null || missing+=("${extra#*:}"); done
    if ((${#missing[@]} > 0)); then
        log "installing ${missing[*]}"
        if ! apt_install "${missing[@]}"; then
            # nginx-light may be gone from newer Debian releases: the plain package will do.
            local alt=("${missing[@]/nginx-light/nginx}")
            apt_install "${alt[@]}" || die "could not install ${alt[*]} with apt-get"
        fi
    fi
    command -v wrk >/dev/null || die "wrk is not installable here; $BENCH_NAME needs it"
    [[ -n $(find_nginx) ]] || die "nginx is not installable here; $BENCH_NAME needs it"
    for extra in "$@"; do
        command -v "${extra%%:*}" >/dev/null || die "${extra%%:*} is not installable here; $BENCH_NAME needs it"
    done
    NGINX=$(find_nginx)
}

# --------------------------------------------------------------------------- helpers

# wait_for_line FILE REGEX TIMEOUT_S PID -> prints the first match of REGEX in FILE
wait_for_line() {
    local file=$1 re=$2 timeout=$3 pid=$4 i=0 m
    while ((i < timeout * 10)); do
        if m=$(grep -m1 -oE "$re" "$file" 2>/dev/null); then
            echo "$m"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}

free_port() {
    local p i
    for i in $(seq 1 100); do
        p=$((20000 + RANDOM % 30000))
        if ! ss -Htln "sport = :$p" | grep -q .; then echo "$p"; return 0; fi
    done
    die "no free port found"
}

# kB of VmRSS (or another /proc status key) summed over pids
proc_status_kb() {
    local key=$1 total=0 pid k v _
    shift
    for pid in "$@"; do
        [[ -r /proc/$pid/status ]] || continue
        while read -r k v _; do
            if [[ $k == "$key:" ]]; then total=$((total + v)); break; fi
        done <"/proc/$pid/status"
    done
    echo "$total"
}

# CPU clock ticks (utime + stime) summed over pids
proc_ticks() {
    local total=0 pid line rest
    for pid in "$@"; do
        [[ -r /proc/$pid/stat ]] || continue
        line=$(<"/proc/$pid/stat")
        rest=${line##*) }                  # fields from 3 (state) on
        read -r -a f <<<"$rest"
        total=$((total + f[11] + f[12]))   # fields 14 and 15
    done
    echo "$total"
}
CLK_TCK=$(getconf CLK_TCK)

# CPU busy over 1 s with nothing of ours under load, in % of one core: other processes
# on the machine (builds, other sessions) compete with the benchmark for the same cores.
background_cpu() {
    local a b
    read -r -a a < <(grep '^cpu ' /proc/stat)
    sleep 1
    read -r -a b < <(grep '^cpu ' /proc/stat)
    awk -v u="$((b[1] + b[2] + b[3] + b[6] + b[7] + b[8] - a[1] - a[2] - a[3] - a[6] - a[7] - a[8]))" \
        -v hz="$CLK_TCK" 'BEGIN { printf "%.0f", 100 * u / hz }'
}

# Waits (at most BENCH_QUIET_WAIT seconds) while other processes use > 20% of a core.
wait_quiet() {
    local waited=0 bg
    bg=$(background_cpu)
    while ((bg > 20 && waited < BENCH_QUIET_WAIT)); do
        if ((waited == 0)); then log "other processes use ${bg}% CPU; waiting up to ${BENCH_QUIET_WAIT}s for quiet"; fi
        bg=$(background_cpu)
        waited=$((waited + 1))
    done
}

# CPU ticks spent in tasks (user + nice + system + steal) by the whole machine
machine_task_ticks() {
    local c
    read -r -a c < <(grep '^cpu ' /proc/stat)
    echo $((c[1] + c[2] + c[3] + c[8]))
}

sha() { sha256sum "$1" | cut -d' ' -f1; }

# auth_args ARRAY TOKEN: sets ARRAY to the curl/wrk arguments sending TOKEN as PRIVATE-TOKEN
# (none when TOKEN is empty)
auth_args() {
    local -n _args=$1
    _args=()
    if [[ -n $2 ]]; then _args=(-H "PRIVATE-TOKEN: $2"); fi
}

# sum of packrat_requests_total over non-ops routes: "hits other"
packrat_request_counts() {
    curl -fsS "$PACKRAT_URL/-/metrics" | awk '
        /^packrat_requests_total\{/ && !/route="ops"/ {
            if ($0 ~ /outcome="hit"/) hit += $NF; else other += $NF
        }
        END { printf "%d %d\n", hit, other }'
}

fmt() { awk -v x="$1" -v d="${2:-1}" 'BEGIN { printf "%.*f", d, x }'; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
# verdict RATIO TARGET [ge|le] -> PASS or MISS
verdict() { awk -v r="$1" -v t="$2" -v dir="${3:-ge}" 'BEGIN {
    if (r == "n/a") { print "MISS"; exit }
    if (dir == "ge") print (r + 0 >= t ? "PASS" : "MISS"); else print (r + 0 <= t ? "PASS" : "MISS") }'; }

# --------------------------------------------------------------------------- build, work dir

build_release() {
    if [[ $BENCH_SKIP_BUILD != 1 ]]; then
        log "building release (cargo build --release --examples --bins)"
        (cd "$ROOT" && cargo build --release --examples --bins) >&2
    fi
    [[ -x $PACKRAT_BIN ]] || die "$PACKRAT_BIN is missing (build failed?)"
    [[ -x $BENCH_FAKE_GITLAB || $BENCH_FAKE_GITLAB == *" "* ]] \
        || die "$BENCH_FAKE_GITLAB is missing: the fake GitLab upstream (examples/fake_gitlab.rs) is needed"
}

# make_work PREFIX: the temp dir every file of the run goes to (removed on exit)
make_work() {
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
    chmod 755 "$WORK"   # nginx workers run as nobody and must read the files
    mkdir -p "$OUT_DIR" "$WORK/www" "$WORK/lists" "$WORK/wrk"
}

# --------------------------------------------------------------------------- servers

# start_fake: the fake GitLab with the benchmark world. Sets FAKE_PID, UPSTREAM_URL.
start_fake() {
    log "starting the fake GitLab upstream"
    # shellcheck disable=SC2086 # BENCH_FAKE_GITLAB may be a command with arguments
    $BENCH_FAKE_GITLAB --listen 127.0.0.1:0 --bench >"$WORK/fake.out" 2>"$WORK/fake.err" &
    FAKE_PID=$!
    PIDS+=("$FAKE_PID")
    UPSTREAM_URL=$(wait_for_line "$WORK/fake.out" 'http://127\.0\.0\.1:[0-9]+' 60 "$FAKE_PID") \
        || { tail -20 "$WORK/fake.err" >&2; die "the fake GitLab did not print 'fake-gitlab listening on http://127.0.0.1:PORT'"; }
    log "fake GitLab at $UPSTREAM_URL"
}

# start_packrat [EXTRA_TOML]: packrat (64 MiB memory cache, 1 h metadata/auth TTLs) in
# front of the fake, with EXTRA_TOML appended to its config. Sets PACKRAT_PID, PACKRAT_URL.
start_packrat() {
    local extra=${1:-} v
    # Only this script's settings reach packrat (PACKRAT_<SECTION>_<KEY> would override them).
    while IFS= read -r v; do unset "$v"; done < <(compgen -e | grep '^PACKRAT_' || true)
    cat >"$WORK/packrat.toml" <<EOF
[server]
listen = "127.0.0.1:0"

[storage]
dir = "$WORK/packrat-data"
memory_cache = "64MiB"

[upstream]
url = "$UPSTREAM_URL"

[cache]
metadata_ttl = "1h"
auth_ttl = "1h"
EOF
    if [[ -n $extra ]]; then printf '\n%s\n' "$extra" >>"$WORK/packrat.toml"; fi
    log "starting packrat"
    if [[ -n $BENCH_PACKRAT_LOG ]]; then export RUST_LOG=$BENCH_PACKRAT_LOG; else unset RUST_LOG; fi
    "$PACKRAT_BIN" serve --config "$WORK/packrat.toml" >"$WORK/packrat.out" 2>"$WORK/packrat.log" &
    PACKRAT_PID=$!
    PIDS+=("$PACKRAT_PID")
    PACKRAT_URL=$(wait_for_line "$WORK/packrat.out" 'http://127\.0\.0\.1:[0-9]+' 30 "$PACKRAT_PID") \
        || { tail -20 "$WORK/packrat.log" >&2; die "packrat did not print 'packrat listening on http://127.0.0.1:PORT'"; }
    log "packrat at $PACKRAT_URL (pid $PACKRAT_PID)"
}

# start_nginx PROBE_PATH: nginx serving $WORK/www statically on its own port (own config
# in $WORK/nginx, sendfile on, access_log off); waits until PROBE_PATH answers.
# Sets NGINX_PID, NGINX_PORT, NGINX_URL.
start_nginx() {
    local probe=$1 i
    chmod -R a+rX "$WORK/www"
    NGINX_PORT=$(free_port)
    mkdir -p "$WORK/nginx/tmp"
    case $BENCH_NGINX_WORKERS in auto | [0-9]*) ;; *) die "BENCH_NGINX_WORKERS must be auto or a number" ;; esac
    cat >"$WORK/nginx/nginx.conf" <<EOF
# Written by $BENCH_NAME: static files, nothing else.
daemon off;
worker_processes $BENCH_NGINX_WORKERS;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events {
    worker_connections 1024;
}
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 75s;
    keepalive_requests 1000000;   # hyper has no per-connection request limit either
    gzip off;
    types {
        application/json json info;
        application/octet-stream tgz;
        application/zip zip;
        text/plain mod;
    }
    default_type application/octet-stream;
    client_body_temp_path $WORK/nginx/tmp/body;
    proxy_temp_path $WORK/nginx/tmp/proxy;
    fastcgi_temp_path $WORK/nginx/tmp/fastcgi;
    uwsgi_temp_path $WORK/nginx/tmp/uwsgi;
    scgi_temp_path $WORK/nginx/tmp/scgi;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        root $WORK/www;
        location / {
        }
    }
}
EOF
    log "starting nginx ($NGINX) on 127.0.0.1:$NGINX_PORT"
    "$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" >"$WORK/nginx/stdout" 2>&1 &
    NGINX_PID=$!
    PIDS+=("$NGINX_PID")
    NGINX_URL="http://127.0.0.1:$NGINX_PORT"
    for i in $(seq 1 50); do
        curl -fsS -o /dev/null "$NGINX_URL$probe" 2>/dev/null && return 0
        kill -0 "$NGINX_PID" 2>/dev/null || { cat "$WORK/nginx/stdout" "$WORK/nginx/error.log" >&2 || true; die "nginx exited"; }
        sleep 0.1
    done
    die "nginx does not answer $NGINX_URL$probe"
}
nginx_workers() { ps -o pid= --ppid "$NGINX_PID" | tr -d ' '; }

# --------------------------------------------------------------------------- warming

# fetch PATH OUTFILE [TOKEN] -> prints the X-Packrat-Cache value; identity encoding, 200
# required; TOKEN, if given, is sent as PRIVATE-TOKEN
fetch() {
    local path=$1 out=$2 hdr status auth
    auth_args auth "${3:-}"
    hdr=$(mktemp "$WORK/hdr.XXXXXX")
    status=$(curl -sS -o "$out" -D "$hdr" -w '%{http_code}' -H 'Accept-Encoding: identity' "${auth[@]}" "$PACKRAT_URL$path") \
        || die "GET $PACKRAT_URL$path failed"
    [[ $status == 200 ]] || die "GET $PACKRAT_URL$path answered $status: $(head -c 300 "$out")"
    if grep -qi '^content-encoding:' "$hdr"; then die "GET $path came back encoded; expected identity"; fi
    tr -d '\r' <"$hdr" | awk -F': *' 'tolower($1) == "x-packrat-cache" { print $2 }'
    rm -f "$hdr"
}

# warm_and_copy PATH DEST [TOKEN]: miss (or hit), then a second GET that must be a hit
# (both with TOKEN, if given); the hit's bytes are what nginx will serve.
warm_and_copy() {
    local path=$1 dest=$2 token=${3:-} first second tries=0
    first=$(fetch "$path" "$dest.first" "$token")
    # The miss's last byte reaches the client before the blob is fsynced, renamed and
    # indexed; until then a GET joins the finishing download ('joined'). Wait for 'hit'.
    while :; do
        second=$(fetch "$path" "$dest" "$token")
        [[ $second == hit ]] && break
        tries=$((tries + 1))
        ((tries < 50)) || die "GET of $path still '$second', not a cache hit, after 5 s (first: '$first')"
        sleep 0.1
    done
    [[ $(sha "$dest.first") == $(sha "$dest") ]] || die "$path: the miss and the hit served different bytes"
    rm -f "$dest.first"
}

# check_same_bytes LIST...: packrat and nginx serve byte-identical bodies for every
# (packrat path, nginx path) pair of $WORK/lists/{packrat,nginx}-LIST (with the list's
# LIST_TOKEN, if any, sent to both)
check_same_bytes() {
    local list p n a b auth
    log "checking that packrat and nginx serve identical bytes"
    for list in "$@"; do
        auth_args auth "${LIST_TOKEN[$list]:-}"
        while read -r p n; do
            a=$(curl -fsS "${auth[@]}" "$PACKRAT_URL$p" | sha256sum | cut -d' ' -f1)
            b=$(curl -fsS "${auth[@]}" "$NGINX_URL$n" | sha256sum | cut -d' ' -f1)
            [[ $a == "$b" ]] || die "$p (packrat) and $n (nginx) differ"
        done < <(paste -d' ' "$WORK/lists/packrat-$list" "$WORK/lists/nginx-$list")
    done
}

# --------------------------------------------------------------------------- wrk

# run_wrk SERVER LIST CONNS SECONDS -> sets R_* variables; every request carries the
# list's LIST_TOKEN, if any (wrk's -H: rotate.lua's requests keep wrk's headers)
run_wrk() {
    local server=$1 list=$2 conns=$3 secs=$4 url pids out auth
    if [[ $server == packrat ]]; then url=$PACKRAT_URL; pids=("$PACKRAT_PID"); else
        url=$NGINX_URL; mapfile -t pids < <(echo "$NGINX_PID"; nginx_workers); fi
    out="$WORK/wrk/$server-$list-$secs.txt"
    auth_args auth "${LIST_TOKEN[$list]:-}"
    local ticks0 ticks1 peak=0 rss sys0 sys1 wrk_ticks=0 t
    ticks0=$(proc_ticks "${pids[@]}")
    sys0=$(machine_task_ticks)
    wrk -t"$BENCH_THREADS" -c"$conns" -d"${secs}s" --timeout 10s "${auth[@]}" -s "$LUA" "$url" -- \
        "$WORK/lists/$server-$list" >"$out" 2>&1 &
    local wpid=$!
    PIDS+=("$wpid")
    while kill -0 "$wpid" 2>/dev/null; do
        rss=$(proc_status_kb VmRSS "${pids[@]}")
        ((rss > peak)) && peak=$rss
        t=$(proc_ticks "$wpid")
        ((t > wrk_ticks)) && wrk_ticks=$t
        sleep 0.2
    done
    wait "$wpid" || { cat "$out" >&2; die "wrk failed against $server"; }
    forget_pid "$wpid"
    ticks1=$(proc_ticks "${pids[@]}")
    sys1=$(machine_task_ticks)
    local line
    line=$(grep '^WRK_RESULT' "$out") || { cat "$out" >&2; die "no result from wrk against $server"; }
    local kv
    R_requests=0 R_bytes=0 R_duration_us=1 R_p50_us=0 R_p99_us=0 R_max_us=0
    R_err_connect=0 R_err_read=0 R_err_write=0 R_err_status=0 R_err_timeout=0
    for kv in ${line#WRK_RESULT }; do printf -v "R_${kv%%=*}" '%s' "${kv#*=}"; done
    R_errors=$((R_err_connect + R_err_read + R_err_write + R_err_status + R_err_timeout))
    R_rps=$(awk -v n="$R_requests" -v d="$R_duration_us" 'BEGIN { printf "%.1f", n / (d / 1e6) }')
    R_mbps=$(awk -v b="$R_bytes" -v d="$R_duration_us" 'BEGIN { printf "%.1f", b / 1e6 / (d / 1e6) }')
    R_p50=$(awk -v x="$R_p50_us" 'BEGIN { printf "%.2f", x / 1000 }')
    R_p99=$(awk -v x="$R_p99_us" 'BEGIN { printf "%.2f", x / 1000 }')
    R_cpu=$(awk -v t=$((ticks1 - ticks0)) -v hz="$CLK_TCK" -v d="$R_duration_us" \
        'BEGIN { printf "%.0f", 100 * t / hz / (d / 1e6) }')
    R_rss_mib=$(awk -v k="$peak" 'BEGIN { printf "%.1f", k / 1024 }')
    # Everything else the machine ran meanwhile (builds, other sessions...), in % of a core:
    # it competed with the server and wrk for the same cores.
    R_other=$(awk -v t=$((sys1 - sys0 - (ticks1 - ticks0) - wrk_ticks)) -v hz="$CLK_TCK" -v d="$R_duration_us" \
        'BEGIN { x = 100 * t / hz / (d / 1e6); printf "%.0f", (x < 0 ? 0 : x) }')
}

# measure_scenarios: for each scenario in SCENARIOS (with its connections in CONNS), runs
# wrk against packrat then nginx, BENCH_ROUNDS times, and fills RES[scenario,server,key]
# (key: rps mbps p50 p99 cpu requests other errors rss_mib spread; packrat also hits and
# nonhit) with each server's median round by req/s.
measure_scenarios() {
    local total sc round server attempt med k v lo hi x tag
    local hits0 other0 hits1 other1
    total=$(( ${#SCENARIOS[@]} * 2 * BENCH_ROUNDS * (BENCH_SECONDS + BENCH_WARMUP_SECONDS + 1) ))
    log "measuring: ${#SCENARIOS[@]} scenarios x 2 servers x $BENCH_ROUNDS round(s) x (${BENCH_WARMUP_SECONDS}s warm-up + ${BENCH_SECONDS}s), about ${total}s"
    for sc in "${SCENARIOS[@]}"; do
        RES[$sc,packrat,hits]=0
        RES[$sc,packrat,nonhit]=0
        for round in $(seq 1 "$BENCH_ROUNDS"); do
            for server in packrat nginx; do
                if ((BENCH_WARMUP_SECONDS > 0)); then
                    run_wrk "$server" "$sc" "${CONNS[$sc]}" "$BENCH_WARMUP_SECONDS"
                fi
                attempt=0
                while :; do
                    # Wait (bounded) for the rest of the machine to go quiet before measuring.
                    wait_quiet
                    if [[ $server == packrat ]]; then read -r hits0 other0 < <(packrat_request_counts); fi
                    run_wrk "$server" "$sc" "${CONNS[$sc]}" "$BENCH_SECONDS"
                    ((R_other > 25 && attempt < BENCH_RETRIES)) || break
                    attempt=$((attempt + 1))
                    log "other processes used ${R_other}% CPU during $sc/$server (${R_rps} req/s); measuring again ($attempt/$BENCH_RETRIES)"
                done
                ((R_other <= 25)) || log "WARNING: other processes used ${R_other}% CPU during $sc/$server; its numbers are noisy"
                if [[ $server == packrat ]]; then
                    read -r hits1 other1 < <(packrat_request_counts)
                    RES[$sc,packrat,nonhit]=$((RES[$sc,packrat,nonhit] + other1 - other0))
                    RES[$sc,packrat,hits]=$((RES[$sc,packrat,hits] + hits1 - hits0))
                    ((other1 == other0)) || log "WARNING: $sc: $((other1 - other0)) packrat answers were not cache hits"
                fi
                for k in rps mbps p50 p99 errors cpu rss_mib requests other; do
                    v="R_$k"
                    RES[$sc,$server,$round,$k]=${!v}
                done
                ((R_errors == 0)) || log "WARNING: $sc/$server: $R_errors wrk errors (connect $R_err_connect, read $R_err_read, write $R_err_write, status $R_err_status, timeout $R_err_timeout)"
                tag=""
                if ((BENCH_ROUNDS > 1)); then tag=" round $round/$BENCH_ROUNDS"; fi
                log "$sc/$server$tag: ${R_rps} req/s, ${R_mbps} MB/s, p50 ${R_p50} ms, p99 ${R_p99} ms, server CPU ${R_cpu}%"
            done
        done
        # Report each server's median round by req/s (its own MB/s, latencies, ... with it),
        # the spread of req/s over rounds, the errors of all rounds and the largest RSS.
        for server in packrat nginx; do
            med=$(for round in $(seq 1 "$BENCH_ROUNDS"); do echo "${RES[$sc,$server,$round,rps]} $round"; done \
                | sort -g | awk '{ r[NR] = $2 } END { print r[int((NR + 1) / 2)] }')
            for k in rps mbps p50 p99 cpu requests other; do RES[$sc,$server,$k]=${RES[$sc,$server,$med,$k]}; done
            RES[$sc,$server,errors]=0
            RES[$sc,$server,rss_mib]=0
            lo="" hi=""
            for round in $(seq 1 "$BENCH_ROUNDS"); do
                RES[$sc,$server,errors]=$((RES[$sc,$server,errors] + RES[$sc,$server,$round,errors]))
                RES[$sc,$server,rss_mib]=$(awk -v a="${RES[$sc,$server,rss_mib]}" -v b="${RES[$sc,$server,$round,rss_mib]}" 'BEGIN { print (b > a ? b : a) }')
                x=${RES[$sc,$server,$round,rps]}
                lo=$(awk -v a="${lo:-$x}" -v b="$x" 'BEGIN { print (b < a ? b : a) }')
                hi=$(awk -v a="${hi:-$x}" -v b="$x" 'BEGIN { print (b > a ? b : a) }')
            done
            RES[$sc,$server,spread]="$lo-$hi"
        done
    done
}
