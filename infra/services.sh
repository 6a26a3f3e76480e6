#!/usr/bin/env bash
# Local Apache Kafka (KRaft, single node) and Redis for development and tests.
#
#   bash infra/services.sh up             fetch Kafka if needed, start both, create topics
#   bash infra/services.sh down           stop both (SIGTERM, then SIGKILL after a timeout)
#   bash infra/services.sh status         what runs, where, and whether it answers
#   bash infra/services.sh restart-kafka [--kill]   restart the broker (data kept)
#   bash infra/services.sh restart-redis [--kill]   restart Redis (data kept: AOF)
#   bash infra/services.sh start-kafka|stop-kafka [--kill]|start-redis|stop-redis [--kill]
#   bash infra/services.sh logs           tail both logs
#   bash infra/services.sh reset          down, then delete all local data (infra/run/)
#   bash infra/services.sh cluster-up     a local Redis Cluster (3 masters, 1 replica each)
#   bash infra/services.sh cluster-down   stop it (cluster-status: what runs; data kept)
#
# No Docker needed: Kafka comes from Maven Central (infra/kafka/pom.xml) into a cache
# outside the repository (TIERSTREAM_CACHE, default ~/.cache/tierstream), Redis is
# Debian's redis-server. Data, configs, pids and logs live in infra/run/ (TIERSTREAM_RUN_DIR).
#
# Environment (all optional):
#   TIERSTREAM_KAFKA_PORT (9092)  TIERSTREAM_KAFKA_CONTROLLER_PORT (KAFKA_PORT+1)
#   TIERSTREAM_REDIS_PORT (6379)  TIERSTREAM_KAFKA_VERSION (the pom's default)
#   TIERSTREAM_KAFKA_HEAP_OPTS ("-Xms256m -Xmx512m")  TIERSTREAM_START_TIMEOUT (90 s)
#   TIERSTREAM_STOP_TIMEOUT (30 s)  TIERSTREAM_REDIS_APPENDFSYNC (everysec|always|no)
#   TIERSTREAM_KAFKA_CDS (1: keep a class-data archive for faster broker starts; 0: off)
#   TIERSTREAM_PARTITIONS (4), TIERSTREAM_TOPIC_* : see tierstream/topics.py
#   TIERSTREAM_REDIS_CLUSTER_PORT (7000: nodes on 7000..7005, cluster bus on port + 10000)
#   TIERSTREAM_REDIS_CLUSTER_REPLICAS (1: one replica per master; 0: three masters alone)
#   TIERSTREAM_REDIS_CLUSTER_NODE_TIMEOUT (2000 ms: how soon a replica replaces a master)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
INFRA="$ROOT/infra"
RUN="${TIERSTREAM_RUN_DIR:-$INFRA/run}"
CACHE="${TIERSTREAM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tierstream}"
PY="${TIERSTREAM_PYTHON:-$ROOT/.venv/bin/python}"

POM="$INFRA/kafka/pom.xml"
LOG4J2="$INFRA/kafka/log4j2.xml"
POM_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM" | head -n1)"
KAFKA_VERSION="${TIERSTREAM_KAFKA_VERSION:-$POM_VERSION}"
KAFKA_HOME="$CACHE/kafka-$KAFKA_VERSION"
KAFKA_LIBS="$KAFKA_HOME/libs"

KAFKA_PORT="${TIERSTREAM_KAFKA_PORT:-9092}"
CONTROLLER_PORT="${TIERSTREAM_KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}"
REDIS_PORT="${TIERSTREAM_REDIS_PORT:-6379}"
HOST=127.0.0.1
KAFKA_HEAP_OPTS="${TIERSTREAM_KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"
START_TIMEOUT="${TIERSTREAM_START_TIMEOUT:-90}"
STOP_TIMEOUT="${TIERSTREAM_STOP_TIMEOUT:-30}"
REDIS_APPENDFSYNC="${TIERSTREAM_REDIS_APPENDFSYNC:-everysec}"
# TIERSTREAM_KAFKA_SASL=1: a broker for testing clients against a secured cluster. Besides
# PLAINTEXT on KAFKA_PORT (for set-up), SASL_PLAINTEXT on KAFKA_PORT+2, SASL_SSL on +3 and
# SSL on +4; user "tierstream" with PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512, password
# TIERSTREAM_KAFKA_SASL_SECRET ("tierstream-local"); a self-signed certificate for
# 127.0.0.1/localhost whose CA file is $TIERSTREAM_RUN_DIR/kafka/tls/ca.pem.
KAFKA_SASL="${TIERSTREAM_KAFKA_SASL:-0}"
SASL_PORT="${TIERSTREAM_KAFKA_SASL_PORT:-$((KAFKA_PORT + 2))}"
SASL_SSL_PORT="${TIERSTREAM_KAFKA_SASL_SSL_PORT:-$((KAFKA_PORT + 3))}"
SSL_PORT="${TIERSTREAM_KAFKA_SSL_PORT:-$((KAFKA_PORT + 4))}"
SASL_SECRET="${TIERSTREAM_KAFKA_SASL_SECRET:-tierstream-local}"

KAFKA_RUN="$RUN/kafka"
KAFKA_DATA="$KAFKA_RUN/data"
KAFKA_LOGS="$KAFKA_RUN/logs"
KAFKA_CONF="$KAFKA_RUN/server.properties"
KAFKA_PID="$RUN/kafka.pid"
KAFKA_TLS="$KAFKA_RUN/tls"
REDIS_DIR="$RUN/redis"
REDIS_CONF="$REDIS_DIR/redis.conf"
REDIS_PID="$RUN/redis.pid"
REDIS_LOG="$RUN/redis.log"

say() { printf '[services] %s\n' "$*"; }
die() {
    printf '[services] ERROR: %s\n' "$*" >&2
    exit 1
}
# Seconds since boot: a monotonic clock for timings (wall-clock time may be adjusted).
now() { if [ -r /proc/uptime ]; then cut -d' ' -f1 /proc/uptime; else date +%s.%N; fi; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# --- helpers -------------------------------------------------------------------------

# Install a Debian package when its command is missing (root only; else explain).
need() {
    local cmd="$1" pkg="$2"
    command -v "$cmd" >/dev/null 2>&1 && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing $pkg (for $cmd) with apt-get"
        if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$pkg" >"$RUN/apt-$pkg.log" 2>&1; then
            DEBIAN_FRONTEND=noninteractive apt-get update -q >>"$RUN/apt-$pkg.log" 2>&1 || true
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$pkg" >>"$RUN/apt-$pkg.log" 2>&1 ||
                die "apt-get install $pkg failed; see $RUN/apt-$pkg.log"
        fi
        command -v "$cmd" >/dev/null 2>&1 || die "$pkg installed but '$cmd' is still missing"
    else
        die "'$cmd' is missing: install the Debian package '$pkg' (or your system's equivalent)"
    fi
}

need_python() {
    [ -x "$PY" ] || die "$PY not found: run 'make install' first (or set TIERSTREAM_PYTHON)"
}

# pid from a pidfile if that process is alive and is ours (its command line names $RUN).
live_pid() {
    local pidfile="$1" pid
    [ -s "$pidfile" ] || return 1
    pid="$(tr -dc '0-9' <"$pidfile")"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$RUN" || return 1
    echo "$pid"
}

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# SIGTERM, wait up to STOP_TIMEOUT, then SIGKILL. $3 = "--kill" skips the polite part.
# A process that has exited but not been reaped yet (a zombie) still answers kill -0, for
# as long as its parent (often a container's init) takes to reap it: seconds. It holds no
# port, file or memory any more, so it counts as gone.
running() {
    local state=""
    kill -0 "$1" 2>/dev/null || return 1
    [ -r "/proc/$1/stat" ] && state="$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)"
    [ "$state" != Z ]
}

stop_pid() {
    local name="$1" pid="$2" mode="${3:-}" i
    if [ "$mode" = "--kill" ]; then
        kill -KILL "$pid" 2>/dev/null || true
    else
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
            running "$pid" || break
            sleep 0.1
        done
        if running "$pid"; then
            say "$name (pid $pid) ignored SIGTERM for ${STOP_TIMEOUT}s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    for ((i = 0; i < 100; i++)); do
        running "$pid" || return 0
        sleep 0.1
    done
    die "$name (pid $pid) does not exit"
}

tail_log() {
    local file="$1"
    [ -f "$file" ] || return 0
    printf -- '----- last lines of %s -----\n' "$file" >&2
    tail -n 40 "$file" >&2
    printf -- '-----\n' >&2
}

# --- Kafka ---------------------------------------------------------------------------

kafka_fetch() {
    # The marker records what was fetched; a changed pom (e.g. log4j version) refetches.
    local stamp marker="$KAFKA_HOME/.complete"
    stamp="$KAFKA_VERSION $(sha256sum "$POM" | cut -c1-16)"
    if [ -f "$marker" ] && [ "$(cat "$marker")" = "$stamp" ] && [ -d "$KAFKA_LIBS" ]; then
        return 0
    fi
    need mvn maven
    say "fetching Apache Kafka $KAFKA_VERSION from Maven Central into $KAFKA_LIBS"
    local t0 tmp
    t0="$(now)"
    mkdir -p "$KAFKA_HOME"
    tmp="$(mktemp -d "$KAFKA_HOME/.fetch.XXXXXX")"
    if ! mvn -q -B -f "$POM" -Dkafka.version="$KAFKA_VERSION" \
        dependency:copy-dependencies -DincludeScope=runtime \
        -DoutputDirectory="$tmp/libs" >"$tmp/mvn.log" 2>&1; then
        cat "$tmp/mvn.log" >&2
        rm -rf "$tmp"
        die "could not fetch Kafka $KAFKA_VERSION with Maven (output above)"
    fi
    rm -rf "$KAFKA_LIBS"
    mv "$tmp/libs" "$KAFKA_LIBS"
    rm -rf "$tmp"
    echo "$stamp" >"$marker"
    say "fetched $(find "$KAFKA_LIBS" -name '*.jar' | wc -l) jars ($(du -sh "$KAFKA_LIBS" | cut -f1)) in $(elapsed "$t0")s"
}

# java command line for Kafka's main classes (the broker and its storage tool).
kafka_java_cmd() {
    # shellcheck disable=SC2206  # heap options are deliberately word-split
    JAVA_CMD=(java $KAFKA_HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20
        -XX:+ExitOnOutOfMemoryError -XX:ErrorFile="$KAFKA_LOGS/hs_err_pid%p.log"
        -Djava.awt.headless=true -Dlog4j2.configurationFile="$LOG4J2" -Dkafka.logs.dir="$KAFKA_LOGS"
        -Dtierstream.run="$RUN" -cp "$KAFKA_LIBS/*")
}

# Class-data sharing: the first broker run records the classes it loaded into an archive
# when it exits cleanly; later starts map it and boot a few seconds faster. The archive
# is per Kafka version and JVM build, kept next to the jars; TIERSTREAM_KAFKA_CDS=0 turns
# this off. A missing or unusable archive only costs the speed-up.
CDS_ENABLED="${TIERSTREAM_KAFKA_CDS:-1}"
cds_paths() {
    local jvm
    jvm="$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.runtime.version = //p' | tr -c 'A-Za-z0-9.\n-' '_')"
    CDS_ARCHIVE="$KAFKA_HOME/cds-${jvm:-unknown}.jsa"
    CDS_PENDING="$KAFKA_RUN/cds-pending.jsa"
}

cds_options() {
    CDS_OPTS=()
    [ "$CDS_ENABLED" = 1 ] || return 0
    cds_paths
    rm -f "$CDS_PENDING"
    if [ -s "$CDS_ARCHIVE" ]; then
        CDS_OPTS=(-XX:SharedArchiveFile="$CDS_ARCHIVE")
    else
        CDS_OPTS=(-XX:ArchiveClassesAtExit="$CDS_PENDING")
    fi
}

# After the broker exited: keep an archive written by a clean exit, drop a partial one.
cds_collect() {
    local mode="${1:-}"
    [ "$CDS_ENABLED" = 1 ] || return 0
    cds_paths
    [ -e "$CDS_PENDING" ] || return 0
    if [ "$mode" != "--kill" ] && [ -s "$CDS_PENDING" ]; then
        mv -f "$CDS_PENDING" "$CDS_ARCHIVE"
    else
        rm -f "$CDS_PENDING"
    fi
}

kafka_java() {
    kafka_java_cmd
    "${JAVA_CMD[@]}" "$@"
}

# The opt-in secured listeners' certificate: self-signed, for 127.0.0.1 and localhost,
# made once with openssl; the broker reads it as a PEM key store (key, then certificate).
kafka_tls() {
    [ -s "$KAFKA_TLS/server.pem" ] && return 0
    need openssl openssl
    mkdir -p "$KAFKA_TLS"
    openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj "/CN=localhost" \
        -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$KAFKA_TLS/key.pem" -out "$KAFKA_TLS/ca.pem" >"$KAFKA_TLS/openssl.log" 2>&1 ||
        die "openssl could not make the broker certificate (see $KAFKA_TLS/openssl.log)"
    cat "$KAFKA_TLS/key.pem" "$KAFKA_TLS/ca.pem" >"$KAFKA_TLS/server.pem"
    chmod 600 "$KAFKA_TLS/key.pem" "$KAFKA_TLS/server.pem"
}

kafka_config() {
    local listeners="PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$CONTROLLER_PORT"
    local advertised="PLAINTEXT://$HOST:$KAFKA_PORT"
    local protocols="CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
    if [ "$KAFKA_SASL" = 1 ]; then
        kafka_tls
        listeners+=",SASL_PLAINTEXT://$HOST:$SASL_PORT,SASL_SSL://$HOST:$SASL_SSL_PORT,SSL://$HOST:$SSL_PORT"
        advertised+=",SASL_PLAINTEXT://$HOST:$SASL_PORT,SASL_SSL://$HOST:$SASL_SSL_PORT,SSL://$HOST:$SSL_PORT"
        protocols+=",SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL"
    fi
    mkdir -p "$KAFKA_DATA" "$KAFKA_LOGS"
    cat >"$KAFKA_CONF" <<EOF
# Generated by infra/services.sh on each start; edit the script, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$CONTROLLER_PORT
listeners=$listeners
advertised.listeners=$advertised
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=$protocols
log.dirs=$KAFKA_DATA
# Topics are created explicitly with the partition counts the app needs.
auto.create.topics.enable=false
num.partitions=1
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# Small, local: keep a week of data, roll small segments.
log.retention.hours=168
log.segment.bytes=67108864
num.network.threads=2
num.io.threads=4
EOF
    if [ "$KAFKA_SASL" = 1 ]; then
        local jaas="org.apache.kafka.common.security.plain.PlainLoginModule required user_tierstream=\"$SASL_SECRET\";"
        local scram_jaas="org.apache.kafka.common.security.scram.ScramLoginModule required;"
        cat >>"$KAFKA_CONF" <<EOF
# TIERSTREAM_KAFKA_SASL=1: secured listeners for client tests (user tierstream with PLAIN,
# SCRAM-SHA-256 and SCRAM-SHA-512; the SSL listener authenticates by TLS only, no client
# certificate required).
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_plaintext.plain.sasl.jaas.config=$jaas
listener.name.sasl_ssl.plain.sasl.jaas.config=$jaas
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=$scram_jaas
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=$scram_jaas
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=$scram_jaas
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=$scram_jaas
ssl.keystore.type=PEM
ssl.keystore.location=$KAFKA_TLS/server.pem
EOF
    fi
}

# A newer Kafka's metadata.version cannot be read by an older broker.
kafka_check_data() {
    local formatted_by
    [ -f "$KAFKA_DATA/meta.properties" ] || return 0
    formatted_by="$(cat "$KAFKA_RUN/formatted-by" 2>/dev/null || true)"
    if [ -n "$formatted_by" ] && [ "$formatted_by" != "$KAFKA_VERSION" ] &&
        [ "$(printf '%s\n%s\n' "$formatted_by" "$KAFKA_VERSION" | sort -V | tail -n1)" = "$formatted_by" ]; then
        die "the data in $KAFKA_DATA was written by Kafka $formatted_by, newer than $KAFKA_VERSION: run 'bash infra/services.sh reset' (deletes local data) or set TIERSTREAM_KAFKA_VERSION=$formatted_by"
    fi
}

kafka_format() {
    [ -f "$KAFKA_DATA/meta.properties" ] && return 0
    local cluster_id
    if [ -s "$KAFKA_RUN/cluster.id" ]; then
        cluster_id="$(cat "$KAFKA_RUN/cluster.id")"
    else
        # What `kafka-storage.sh random-uuid` prints (16 random bytes, URL-safe base64,
        # never starting with '-'), without starting a JVM for it.
        cluster_id=-
        while [ "${cluster_id#-}" != "$cluster_id" ]; do
            cluster_id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
        done
        echo "$cluster_id" >"$KAFKA_RUN/cluster.id"
    fi
    say "formatting KRaft storage in $KAFKA_DATA (cluster id $cluster_id)"
    local scram=()
    if [ "$KAFKA_SASL" = 1 ]; then
        # SCRAM credentials live in the cluster metadata: written when it is formatted.
        scram=(--add-scram "SCRAM-SHA-256=[name=tierstream,password=$SASL_SECRET]"
            --add-scram "SCRAM-SHA-512=[name=tierstream,password=$SASL_SECRET]")
    fi
    kafka_java kafka.tools.StorageTool format -t "$cluster_id" -c "$KAFKA_CONF" "${scram[@]}" \
        >"$KAFKA_LOGS/format.log" 2>&1 || {
        tail_log "$KAFKA_LOGS/format.log"
        die "formatting Kafka storage failed"
    }
    echo "$KAFKA_VERSION" >"$KAFKA_RUN/formatted-by"
}

kafka_probe() {
    need_python
    "$PY" "$INFRA/probe.py" kafka "$HOST:$KAFKA_PORT" --pid "$1" --timeout "$START_TIMEOUT"
}

kafka_fail() {
    tail_log "$KAFKA_LOGS/server.log"
    tail_log "$KAFKA_LOGS/kafka.out"
    die "Kafka did not answer on $HOST:$KAFKA_PORT within ${START_TIMEOUT}s (logs above, full: $KAFKA_LOGS)"
}

kafka_ready() {
    say "Kafka $KAFKA_VERSION ready on $HOST:$KAFKA_PORT (controller $HOST:$CONTROLLER_PORT, pid $1) in $(elapsed "$2")s"
    if [ "$KAFKA_SASL" = 1 ]; then
        say "  SASL_PLAINTEXT on $HOST:$SASL_PORT, SASL_SSL on $HOST:$SASL_SSL_PORT (PLAIN or SCRAM, user tierstream), SSL on $HOST:$SSL_PORT; CA $KAFKA_TLS/ca.pem"
    fi
}

# Start the broker in the background; sets LAUNCHED_PID.
kafka_launch() {
    local i
    rm -f "$KAFKA_PID"
    kafka_java_cmd
    cds_options
    STARTED+=(kafka)
    # A new session, so that the broker outlives the shell (make, CI step) that started it.
    # The inner shell records its own pid and then becomes java (exec keeps the pid).
    # shellcheck disable=SC2016
    setsid bash -c 'echo $$ >"$0"; exec "$@"' "$KAFKA_PID" \
        "${JAVA_CMD[@]}" "${CDS_OPTS[@]}" kafka.Kafka "$KAFKA_CONF" \
        </dev/null >"$KAFKA_LOGS/kafka.out" 2>&1 9>&- &
    disown $! 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        [ -s "$KAFKA_PID" ] && break
        sleep 0.1
    done
    LAUNCHED_PID="$(tr -dc '0-9' <"$KAFKA_PID" 2>/dev/null)" || true
    [ -n "$LAUNCHED_PID" ] || die "Kafka did not start (see $KAFKA_LOGS/kafka.out)"
}

kafka_start() {
    local pid t0 java_major
    if pid="$(live_pid "$KAFKA_PID")"; then
        say "Kafka already running (pid $pid) on $HOST:$KAFKA_PORT"
        t0="$(now)"
        kafka_probe "$pid" || kafka_fail
        kafka_ready "$pid" "$t0"
        return 0
    fi
    port_open "$KAFKA_PORT" && die "port $KAFKA_PORT is in use by another process: stop it or set TIERSTREAM_KAFKA_PORT"
    port_open "$CONTROLLER_PORT" && die "port $CONTROLLER_PORT is in use by another process: stop it or set TIERSTREAM_KAFKA_CONTROLLER_PORT"
    if [ "$KAFKA_SASL" = 1 ]; then
        port_open "$SASL_PORT" && die "port $SASL_PORT is in use by another process: set TIERSTREAM_KAFKA_SASL_PORT"
        port_open "$SASL_SSL_PORT" && die "port $SASL_SSL_PORT is in use by another process: set TIERSTREAM_KAFKA_SASL_SSL_PORT"
        port_open "$SSL_PORT" && die "port $SSL_PORT is in use by another process: set TIERSTREAM_KAFKA_SSL_PORT"
    fi
    kafka_check_data
    need java default-jre-headless
    java_major="$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = \([0-9]*\).*/\1/p')"
    [ "${java_major:-0}" -ge 17 ] || die "Kafka $KAFKA_VERSION needs Java 17 or newer (found: ${java_major:-unknown}); install openjdk-17-jre-headless"
    kafka_fetch
    t0="$(now)"
    kafka_config
    kafka_format
    kafka_launch
    if ! kafka_probe "$LAUNCHED_PID"; then
        # A damaged class-data archive makes the JVM die at once: drop it, start plainly.
        if [ "${#CDS_OPTS[@]}" -gt 0 ] && [ "${CDS_OPTS[0]#-XX:SharedArchiveFile=}" != "${CDS_OPTS[0]}" ] &&
            ! kill -0 "$LAUNCHED_PID" 2>/dev/null; then
            say "the broker died at start with the class-data archive $CDS_ARCHIVE: deleting it, starting again without"
            rm -f "$CDS_ARCHIVE"
            CDS_ENABLED=0
            kafka_launch
            kafka_probe "$LAUNCHED_PID" || kafka_fail
        else
            kafka_fail
        fi
    fi
    kafka_ready "$LAUNCHED_PID" "$t0"
}

kafka_stop() {
    local pid
    if pid="$(live_pid "$KAFKA_PID")"; then
        say "stopping Kafka (pid $pid)${1:+ with SIGKILL}"
        stop_pid Kafka "$pid" "${1:-}"
        cds_collect "${1:-}"
    fi
    rm -f "$KAFKA_PID"
}

topics_create() {
    need_python
    (cd "$ROOT" && TIERSTREAM_KAFKA_BOOTSTRAP="$HOST:$KAFKA_PORT" "$PY" -m tierstream.topics) ||
        die "creating topics failed"
}

# --- Redis ---------------------------------------------------------------------------

redis_config() {
    mkdir -p "$REDIS_DIR"
    cat >"$REDIS_CONF" <<EOF
# Generated by infra/services.sh on each start; edit the script, not this file.
bind $HOST
protected-mode yes
port $REDIS_PORT
daemonize yes
pidfile $REDIS_PID
logfile $REDIS_LOG
loglevel notice
dir $REDIS_DIR
databases 16
# The config path in the process title lets this script tell its own Redis from others.
proc-title-template "{title} {listen-addr} {server-mode} {config-file}"
# State survives a restart (restart-redis, failure tests): append-only file, no RDB snapshots.
appendonly yes
appendfsync $REDIS_APPENDFSYNC
appenddirname appendonlydir
save ""
stop-writes-on-bgsave-error no
EOF
}

redis_cli() { redis-cli -h "$HOST" -p "$REDIS_PORT" "$@"; }

redis_start() {
    local pid t0 i
    need redis-server redis-server
    need redis-cli redis-tools
    if pid="$(live_pid "$REDIS_PID")"; then
        say "Redis already running (pid $pid) on $HOST:$REDIS_PORT"
        return 0
    fi
    port_open "$REDIS_PORT" && die "port $REDIS_PORT is in use by another process (a system redis-server? 'systemctl disable --now redis-server'), or set TIERSTREAM_REDIS_PORT"
    t0="$(now)"
    redis_config
    rm -f "$REDIS_PID"
    STARTED+=(redis)
    redis-server "$REDIS_CONF" >/dev/null 2>&1 9>&- || {
        tail_log "$REDIS_LOG"
        die "redis-server failed to start"
    }
    for ((i = 0; i < START_TIMEOUT * 10; i++)); do
        if [ "$(redis_cli ping 2>/dev/null)" = PONG ]; then
            pid="$(tr -dc '0-9' <"$REDIS_PID" 2>/dev/null)" || true
            say "Redis $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p') ready on redis://$HOST:$REDIS_PORT/0 (pid ${pid:-?}, AOF in $REDIS_DIR) in $(elapsed "$t0")s"
            return 0
        fi
        sleep 0.1
    done
    tail_log "$REDIS_LOG"
    die "Redis did not answer PING on $HOST:$REDIS_PORT within ${START_TIMEOUT}s"
}

redis_stop() {
    local pid
    if pid="$(live_pid "$REDIS_PID")"; then
        say "stopping Redis (pid $pid)${1:+ with SIGKILL}"
        # SIGTERM makes Redis fsync the AOF and exit cleanly.
        stop_pid Redis "$pid" "${1:-}"
    fi
    rm -f "$REDIS_PID"
}

# --- Redis Cluster -------------------------------------------------------------------
# Its own ports and directory ($RUN/redis-cluster), apart from the single Redis above;
# the store connects to it with TIERSTREAM_REDIS_URL=redis+cluster://127.0.0.1:7000.

CLUSTER_PORT="${TIERSTREAM_REDIS_CLUSTER_PORT:-7000}"
CLUSTER_REPLICAS="${TIERSTREAM_REDIS_CLUSTER_REPLICAS:-1}"
CLUSTER_NODE_TIMEOUT="${TIERSTREAM_REDIS_CLUSTER_NODE_TIMEOUT:-2000}"
CLUSTER_DIR="$RUN/redis-cluster"
CLUSTER_NODES=$((3 * (1 + CLUSTER_REPLICAS)))

cluster_ports() { seq "$CLUSTER_PORT" $((CLUSTER_PORT + CLUSTER_NODES - 1)); }

cluster_node_config() {
    local port="$1" dir="$CLUSTER_DIR/$1"
    mkdir -p "$dir"
    cat >"$dir/redis.conf" <<EOF
# Generated by infra/services.sh on each start; edit the script, not this file.
bind $HOST
protected-mode yes
port $port
daemonize yes
pidfile $dir/redis.pid
logfile $dir/redis.log
dir $dir
proc-title-template "{title} {listen-addr} {server-mode} {config-file}"
cluster-enabled yes
cluster-config-file nodes.conf
cluster-node-timeout $CLUSTER_NODE_TIMEOUT
appendonly yes
appendfsync $REDIS_APPENDFSYNC
appenddirname appendonlydir
save ""
EOF
}

cluster_info() { redis-cli -h "$HOST" -p "$1" cluster info 2>/dev/null | tr -d '\r' | sed -n "s/^$2://p"; }

cluster_up() {
    local port t0 i nodes=() ok
    need redis-server redis-server
    need redis-cli redis-tools
    t0="$(now)"
    for port in $(cluster_ports); do
        live_pid "$CLUSTER_DIR/$port/redis.pid" >/dev/null && continue
        port_open "$port" && die "port $port is in use by another process: set TIERSTREAM_REDIS_CLUSTER_PORT"
        cluster_node_config "$port"
        redis-server "$CLUSTER_DIR/$port/redis.conf" >/dev/null 2>&1 9>&- || {
            tail_log "$CLUSTER_DIR/$port/redis.log"
            die "redis-server on port $port failed to start"
        }
    done
    for port in $(cluster_ports); do
        for ((i = 0; i < START_TIMEOUT * 10; i++)); do
            [ "$(redis-cli -h "$HOST" -p "$port" ping 2>/dev/null)" = PONG ] && break
            sleep 0.1
        done
    done
    # A first node that knows no other is new: create the cluster once, from all nodes.
    # (Restarted nodes find each other again through their nodes.conf.)
    if [ "$(cluster_info "$CLUSTER_PORT" cluster_known_nodes)" = 1 ]; then
        for port in $(cluster_ports); do nodes+=("$HOST:$port"); done
        redis-cli --cluster create "${nodes[@]}" --cluster-replicas "$CLUSTER_REPLICAS" \
            --cluster-yes >"$CLUSTER_DIR/create.log" 2>&1 || {
            tail_log "$CLUSTER_DIR/create.log"
            die "redis-cli --cluster create failed"
        }
    fi
    for ((i = 0; i < START_TIMEOUT * 10; i++)); do
        ok=1
        for port in $(cluster_ports); do
            [ "$(cluster_info "$port" cluster_state)" = ok ] || ok=0
        done
        if [ "$ok" = 1 ]; then
            say "Redis Cluster ready on $HOST:$CLUSTER_PORT..$((CLUSTER_PORT + CLUSTER_NODES - 1)) (3 masters, $CLUSTER_REPLICAS replica(s) each) in $(elapsed "$t0")s: REDIS_URL=redis+cluster://$HOST:$CLUSTER_PORT"
            return 0
        fi
        sleep 0.1
    done
    die "the Redis Cluster did not reach cluster_state:ok within ${START_TIMEOUT}s (logs in $CLUSTER_DIR)"
}

cluster_down() {
    local port pid
    for port in $(cluster_ports); do
        if pid="$(live_pid "$CLUSTER_DIR/$port/redis.pid")"; then
            stop_pid "Redis Cluster node $port" "$pid" "${1:-}"
        fi
        rm -f "$CLUSTER_DIR/$port/redis.pid"
    done
    say "Redis Cluster down (data kept in $CLUSTER_DIR)"
}

cluster_status() {
    local port pid rc=0
    for port in $(cluster_ports); do
        if pid="$(live_pid "$CLUSTER_DIR/$port/redis.pid")"; then
            say "Redis Cluster node $port: running (pid $pid), cluster_state $(cluster_info "$port" cluster_state)"
        else
            say "Redis Cluster node $port: stopped"
            rc=1
        fi
    done
    return $rc
}

# --- commands ------------------------------------------------------------------------

status() {
    local pid rc=0
    if pid="$(live_pid "$KAFKA_PID")"; then
        if [ -x "$PY" ] && "$PY" "$INFRA/probe.py" kafka "$HOST:$KAFKA_PORT" --timeout 5 >/dev/null 2>&1; then
            say "Kafka: running (pid $pid), answering on $HOST:$KAFKA_PORT"
        else
            say "Kafka: running (pid $pid), NOT answering on $HOST:$KAFKA_PORT"
            rc=1
        fi
    else
        say "Kafka: stopped"
        rc=1
    fi
    if pid="$(live_pid "$REDIS_PID")"; then
        if [ "$(redis_cli ping 2>/dev/null)" = PONG ]; then
            say "Redis: running (pid $pid), answering on redis://$HOST:$REDIS_PORT"
        else
            say "Redis: running (pid $pid), NOT answering on $HOST:$REDIS_PORT"
            rc=1
        fi
    else
        say "Redis: stopped"
        rc=1
    fi
    say "data and logs: $RUN; Kafka jars: $KAFKA_LIBS"
    return $rc
}

# If `up` fails half-way, stop what this invocation started: no stray Redis after a
# failed `make test`. What was already running before is left alone.
STARTED=()
up_rollback() {
    local rc=$?
    [ "$rc" = 0 ] && return 0
    for service in "${STARTED[@]}"; do
        say "up failed: stopping the $service this run started"
        "${service}_stop" || true
    done
    exit "$rc"
}

up() {
    local t0
    t0="$(now)"
    trap up_rollback EXIT
    redis_start
    kafka_start
    topics_create
    trap - EXIT
    say "services up in $(elapsed "$t0")s: KAFKA_BOOTSTRAP=$HOST:$KAFKA_PORT REDIS_URL=redis://$HOST:$REDIS_PORT/0"
}

down() {
    kafka_stop
    redis_stop
    say "services down"
}

main() {
    local cmd="${1:-}"
    shift || true
    case "${1:-}" in
    "" | --kill) ;;
    *) die "unknown option '$1' (only --kill, for stop-/restart- commands)" ;;
    esac
    mkdir -p "$RUN"
    # One services.sh at a time per run directory (make test in two shells, etc.).
    exec 9>"$RUN/.lock"
    flock -w 300 9 || die "another infra/services.sh holds $RUN/.lock"
    case "$cmd" in
    up) up ;;
    down) down ;;
    status) status ;;
    start-kafka) kafka_start ;;
    stop-kafka) kafka_stop "${1:-}" ;;
    restart-kafka)
        kafka_stop "${1:-}"
        kafka_start
        ;;
    start-redis) redis_start ;;
    stop-redis) redis_stop "${1:-}" ;;
    restart-redis)
        redis_stop "${1:-}"
        redis_start
        ;;
    topics) topics_create ;;
    cluster-up) cluster_up ;;
    cluster-down) cluster_down "${1:-}" ;;
    cluster-status) cluster_status ;;
    logs)
        tail -n 30 "$KAFKA_LOGS/server.log" "$REDIS_LOG" 2>/dev/null || true
        ;;
    reset)
        down
        rm -rf "$KAFKA_RUN" "$REDIS_DIR" "$REDIS_LOG"
        say "deleted local Kafka and Redis data under $RUN"
        ;;
    *)
        sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
        [ -z "$cmd" ] || [ "$cmd" = help ] || [ "$cmd" = -h ] || [ "$cmd" = --help ] || exit 2
        ;;
    esac
}

main "$@"
