#!/bin/sh
# switchyard-announce.sh: ties the BGP announcement of the anycast address to Switchyard's
# health. Every INTERVAL seconds it runs `switchyard ctl health` (exit 0: running with at
# least one processor up) and enables BIRD's `switchyard_anycast` static protocol when it
# passes, disables it (the route is withdrawn) when it does not: the dispatcher stopped,
# crashed, hangs (no answer within CHECK_TIMEOUT) or has no processor up. The state is set
# on every round (idempotent), so a BIRD restart or reconfigure is corrected within INTERVAL.
# On SIGTERM/SIGINT it withdraws before exiting.
#
# Settings (environment):
#   SWITCHYARD_CTL_SOCKET   dispatcher control socket   [/run/switchyard/ctl.sock]
#   BIRD_SOCKET             BIRD control socket         [/run/bird/bird.ctl]
#   ANNOUNCE_PROTOCOL       BIRD protocol to toggle     [switchyard_anycast]
#   ANNOUNCE_INTERVAL       seconds between checks      [1]
#   CHECK_TIMEOUT           seconds a check may take    [2]
#   SWITCHYARD, BIRDC       the programs                [switchyard, birdc]
set -eu

CTL=${SWITCHYARD_CTL_SOCKET:-/run/switchyard/ctl.sock}
BIRD=${BIRD_SOCKET:-/run/bird/bird.ctl}
PROTO=${ANNOUNCE_PROTOCOL:-switchyard_anycast}
INTERVAL=${ANNOUNCE_INTERVAL:-1}
CHECK_TIMEOUT=${CHECK_TIMEOUT:-2}
SWITCHYARD=${SWITCHYARD:-switchyard}
BIRDC=${BIRDC:-birdc}

say() { echo "switchyard-announce: $*" >&2; }

set_state() {
    if ! "$BIRDC" -s "$BIRD" "$1" "$PROTO" >/dev/null 2>&1; then
        say "birdc $1 $PROTO failed (is BIRD running on $BIRD?)"
        return 1
    fi
}

trap 'set_state disable || true; say "stopped, withdrawn"; exit 0' INT TERM

last=
while :; do
    if timeout "$CHECK_TIMEOUT" "$SWITCHYARD" ctl --socket "$CTL" health >/dev/null 2>&1; then
        want=enable
    else
        want=disable
    fi
    if [ "$want" != "$last" ]; then
        case $want in
            enable) say "healthy: announcing" ;;
            disable) say "not healthy: withdrawing" ;;
        esac
    fi
    if set_state "$want"; then last=$want; else last=; fi
    sleep "$INTERVAL" &
    wait $! || true
done
