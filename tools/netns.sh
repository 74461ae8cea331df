#!/usr/bin/env bash
# Test hosts on one machine: Linux network namespaces sluice-h1 … sluice-hN, each with one veth
# link to a bridge in the root namespace, addressed 10.231.0.I/24 (host I). Needs root.
#
#   tools/netns.sh up N             make hosts 1..N (idempotent: hosts already there are kept)
#   tools/netns.sh down             remove every sluice-h* host and the bridge
#   tools/netns.sh rate I RATE [out] shape host I's link to RATE each way (tc tbf, e.g. 20mbit),
#                                   or only what leaves host I
#   tools/netns.sh unshape I        remove that shaping
#   tools/netns.sh cut I | mend I   take host I's link down, or up again
set -euo pipefail

bridge=sluice-br
prefix=10.231.0

host_link() { echo "sluice-v$1"; }

up() {
    local count=$1
    if ! ip link show "$bridge" >/dev/null 2>&1; then
        ip link add "$bridge" type bridge
    fi
    ip link set "$bridge" up
    for i in $(seq 1 "$count"); do
        local ns=sluice-h$i outside
        outside=$(host_link "$i")
        if ! ip netns list | grep -qw "$ns"; then
            ip netns add "$ns"
        fi
        if ! ip link show "$outside" >/dev/null 2>&1; then
            ip link add "$outside" type veth peer name eth0 netns "$ns"
            ip link set "$outside" master "$bridge"
            ip netns exec "$ns" ip addr add "$prefix.$i/24" dev eth0
        fi
        ip link set "$outside" up
        ip netns exec "$ns" ip link set lo up
        ip netns exec "$ns" ip link set eth0 up
    done
}

down() {
    for ns in $(ip netns list | awk '{print $1}' | grep '^sluice-h' || true); do
        ip netns pids "$ns" | xargs -r kill -9 2>/dev/null || true
        ip netns del "$ns"
    done
    ip link show "$bridge" >/dev/null 2>&1 && ip link del "$bridge"
    # The kernel removes a namespace's veth links after `ip netns del` returns: wait for them, so
    # that an `up` right after makes its links anew instead of finding the old ones.
    for _ in $(seq 1 100); do
        ip -o link show | grep -q ' sluice-v' || return 0
        sleep 0.05
    done
    return 0
}

shape() {
    local i=$1 rate=$2 way=${3:-both}
    case "$way" in both | out) ;; *) echo "netns.sh rate: the last word is 'out' or nothing, not '$way'" >&2; exit 2 ;; esac
    # What leaves the host (inside its namespace) and, both ways, what reaches it (the bridge port).
    ip netns exec "sluice-h$i" tc qdisc replace dev eth0 root tbf rate "$rate" burst 32kbit latency 400ms
    if [ "$way" = both ]; then
        tc qdisc replace dev "$(host_link "$i")" root tbf rate "$rate" burst 32kbit latency 400ms
    fi
}

unshape() {
    local i=$1
    ip netns exec "sluice-h$i" tc qdisc del dev eth0 root 2>/dev/null || true
    tc qdisc del dev "$(host_link "$i")" root 2>/dev/null || true
}

case "${1:-}" in
    up) up "${2:?how many hosts}" ;;
    down) down ;;
    rate) shape "${2:?which host}" "${3:?rate, e.g. 20mbit}" "${4:-both}" ;;
    unshape) unshape "${2:?which host}" ;;
    cut) ip link set "$(host_link "${2:?which host}")" down ;;
    mend) ip link set "$(host_link "${2:?which host}")" up ;;
    *) sed -n '2,12p' "$0" >&2; exit 2 ;;
esac
