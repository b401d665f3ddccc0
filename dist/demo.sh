#!/usr/bin/env bash
# make demo: two nodes, one ZooKeeper, one crontab line; the job runs on one
# node only; the active node dies; the other takes over within seconds.
# Everything runs on loopback in a temporary directory and is cleaned up.
set -euo pipefail

HACRON=${HACRON:-$PWD/hacron}
ZK_JAR=/usr/share/java/zookeeper.jar
[ -x "$HACRON" ] || { echo "demo: $HACRON not built (make build)" >&2; exit 1; }
[ -f "$ZK_JAR" ] || { echo "demo: Debian's zookeeper is missing: apt-get install -y zookeeper" >&2; exit 1; }

work=$(mktemp -d /tmp/hacron-demo.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

# A free loopback port: nothing answers on it.
free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 20000))
		(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
	done
}

four_letter() { # four_letter PORT CMD
	(exec 3<>"/dev/tcp/127.0.0.1/$1" && printf '%s' "$2" >&3 && cat <&3) 2>/dev/null || true
}

say "Starting a local ZooKeeper (Debian's package) in $work"
port=$(free_port)
mkdir -p "$work/zk"
cat >"$work/zk/zoo.cfg" <<CFG
tickTime=500
initLimit=10
syncLimit=5
dataDir=$work/zk
clientPort=$port
clientPortAddress=127.0.0.1
admin.enableServer=false
4lw.commands.whitelist=*
CFG
java -Xmx256m -XX:+UseSerialGC -cp "$ZK_JAR:/usr/share/java/slf4j-simple.jar" \
	org.apache.zookeeper.server.quorum.QuorumPeerMain "$work/zk/zoo.cfg" >"$work/zk/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 200); do
	four_letter "$port" srvr | grep -q '^Mode: ' && break
	sleep 0.1
done
four_letter "$port" srvr | grep '^Mode: ' || { echo "demo: ZooKeeper did not start:" >&2; tail "$work/zk/server.log" >&2; exit 1; }

export HACRON_ZK=127.0.0.1:$port HACRON_CLUSTER=demo HACRON_SESSION_TIMEOUT=4s
export HACRON_CONFIG=$work/hacron.conf
: >"$HACRON_CONFIG"

say "Starting two agents, node-a and node-b (session timeout 4s)"
for n in a b; do
	show "$HACRON" agent --detach --node "node-$n" --socket "$work/$n.sock" --pid-file "$work/$n.pid" --state-file "$work/$n.state"
	for _ in $(seq 1 100); do [ -S "$work/$n.sock" ] && [ -s "$work/$n.pid" ] && break; sleep 0.05; done
	pids+=("$(cat "$work/$n.pid")")
	sleep 0.3
done
for n in a b; do
	printf 'node-%s: %s (state file: %s)\n' "$n" "$("$HACRON" state --socket "$work/$n.sock" || true)" "$(cat "$work/$n.state")"
done

job=(sh -c 'echo "  backup ran on $HACRON_NODE, slot $HACRON_SLOT, fencing token $HACRON_FENCING_TOKEN"')
say "The same crontab line fires on both nodes: hacron run -- ${job[*]}"
for n in a b; do
	echo "node-$n:"
	"$HACRON" run --socket "$work/$n.sock" -- "${job[@]}"
	echo "  exit code $?"
done

show "$HACRON" status

active=a standby=b
"$HACRON" state -q --socket "$work/a.sock" || { active=b standby=a; }
say "SIGKILL the active agent (node-$active): no goodbye, its session must expire"
kill -9 "$(cat "$work/$active.pid")"
start=$(date +%s%N)
until "$HACRON" state -q --socket "$work/$standby.sock"; do sleep 0.01; done
end=$(date +%s%N)
printf 'node-%s is active %d ms after the crash (bound: session timeout + 1 s)\n' "$standby" $(((end - start) / 1000000))

say "The next run of the crontab line"
echo "node-$standby:"
"$HACRON" run --socket "$work/$standby.sock" -- "${job[@]}"
echo "  exit code $?"
show "$HACRON" status

say "Clean stop of node-$standby (SIGTERM): it steps down and closes its session"
pid=$(cat "$work/$standby.pid")
kill -TERM "$pid"
while kill -0 "$pid" 2>/dev/null; do sleep 0.01; done
echo "node-$standby has stopped"
echo "state file of node-$standby: $(cat "$work/$standby.state")"
say "Done; cleaning up"
