#!/usr/bin/env bash
# Network-namespace labs for hipbone's real-network tests and demo.
#
# Sourced (tests, demo): everything the lab made is torn down when the shell exits, fails or
# is interrupted.
#   source scripts/lab.sh
#   lab_init                       # per-run suffix, teardown trap
#   lab_two                        # or lab_routed, lab_one, or build your own:
#   lab_host a; lab_host b; lab_link a b 203.0.113.0/28 2001:db8:7::/64
#   lab_exec a ping -c1 198.51.100.2
#   lab_spawn b some-daemon >log 2>&1    # background; killed at teardown
#   lab_on_exit 'cp "$(lab_state)/log" /tmp/keep'  # your own cleanup, run before teardown
# By hand:
#   scripts/lab.sh up one|two|routed     # prints the suffix on stdout, leaves the lab up
#   scripts/lab.sh down SUFFIX           # kills the lab's processes, deletes its namespaces
#   scripts/lab.sh list                  # suffixes of the labs present
#
# Names. Namespaces are hb-NAME-SUFFIX; the veth end in A toward B on the N-th link of a run
# is hbNa-SUFFIX, the end in B is hbNb-SUFFIX (at most 15 characters, as the kernel wants).
# SUFFIX is 6 hex digits, unique among the labs present, so runs never collide.
#
# Rules kept here (see shared LAB.md): nothing is created in, routed through or changed in the
# root namespace (veth ends are created directly inside their namespaces); addresses only from
# 198.51.100.0/24, 203.0.113.0/24 and 2001:db8::/32, never 192.0.2.0/24; IPv6 addresses with
# nodad and DAD off in every namespace; txqueuelen 10000 (500 drops packets under load).
#
# lab_one: a single host, for tests that only need a private stack (a TUN, a loopback).
#
#   ┌────────────────────┐
#   │ hb-a-$SUFFIX       │
#   │   lo               │
#   └────────────────────┘
#
# lab_two: two hosts on one link.
#
#   ┌──────────────────────┐                      ┌──────────────────────┐
#   │ hb-a-$SUFFIX         │                      │ hb-b-$SUFFIX         │
#   │   hb1a-$SUFFIX ──────┼──────── veth ────────┼────── hb1b-$SUFFIX   │
#   │   198.51.100.1/24    │                      │   198.51.100.2/24    │
#   │   2001:db8:1::1/64   │                      │   2001:db8:1::2/64   │
#   └──────────────────────┘                      └──────────────────────┘
#
# lab_routed: two hosts in different subnets, a router between them.
#
#   ┌────────────────────┐        ┌─────────────────────────────────┐        ┌────────────────────┐
#   │ hb-a-$SUFFIX       │        │ hb-r-$SUFFIX   (forwarding on)  │        │ hb-b-$SUFFIX       │
#   │   hb1b-$SUFFIX ────┼─ veth ─┼── hb1a-$SUFFIX   hb2a-$SUFFIX ──┼─ veth ─┼──── hb2b-$SUFFIX  │
#   │   198.51.100.2/25  │        │   198.51.100.1/25  203.0.113.1/25        │   203.0.113.2/25   │
#   │   2001:db8:1::2/64 │        │   2001:db8:1::1/64 2001:db8:2::1/64      │   2001:db8:2::2/64 │
#   │   default via R    │        │                                 │        │   default via R    │
#   └────────────────────┘        └─────────────────────────────────┘        └────────────────────┘
#
# A default route inside a namespace only reaches the router namespace: a lab namespace has no
# path to the machine's real interfaces.

# Where each run keeps its state (tracked PIDs, link counter, interface names), so that
# `scripts/lab.sh down SUFFIX` from another shell finds what `up` made.
LAB_STATE_ROOT=${LAB_STATE_ROOT:-/run/hipbone-lab}
LAB_TXQUEUELEN=10000

lab__die() {
  echo "lab.sh: $*" >&2
  return 1
}

# The namespace of host NAME in this run.
lab_ns() { echo "hb-$1-${LAB_SUFFIX:?lab_init first}"; }

# The state directory of this run.
lab_state() { echo "$LAB_STATE_ROOT/${LAB_SUFFIX:?lab_init first}"; }

# lab_init: picks this run's suffix and arms the teardown trap (EXIT, INT, TERM). An EXIT trap
# set before lab_init is kept (it runs last, after the lab_on_exit hooks).
lab_init() {
  [ "$(id -u)" = 0 ] || lab__die "the lab needs root (network namespaces, veth)" || return
  mkdir -p "$LAB_STATE_ROOT"
  local tries=0 suffix
  while :; do
    # $$ separates concurrent runs, RANDOM separates runs whose PIDs share their low bits;
    # mkdir is the atomic claim, so two runs never get the same suffix.
    suffix=$(printf '%04x%02x' $(($$ & 0xffff)) $((RANDOM & 0xff)))
    if ! ip netns list | grep -q -- "-$suffix\( \|$\)" && mkdir "$LAB_STATE_ROOT/$suffix" 2>/dev/null; then
      break
    fi
    tries=$((tries + 1))
    [ "$tries" -lt 100 ] || lab__die "no free suffix in $LAB_STATE_ROOT" || return
  done
  export LAB_SUFFIX=$suffix
  echo 0 >"$(lab_state)/links"
  : >"$(lab_state)/pids"
  : >"$(lab_state)/ifs"
  LAB_EXIT_HOOKS=()
  local prev
  prev=$(trap -p EXIT)
  if [ -n "$prev" ]; then
    local -a words
    eval "words=($prev)" # trap -- 'command' EXIT
    LAB_EXIT_HOOKS+=("${words[2]}")
  fi
  trap 'lab__on_exit $?' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# lab_attach SUFFIX: works on a lab made by `scripts/lab.sh up` (no teardown trap).
lab_attach() {
  [ -d "$LAB_STATE_ROOT/$1" ] || lab__die "no lab with suffix '$1'" || return
  export LAB_SUFFIX=$1
  LAB_EXIT_HOOKS=()
}

# lab_on_exit CMD: runs CMD (a shell string) at teardown, before the lab goes away; hooks
# run last-registered first and a failing hook does not stop the others.
lab_on_exit() { LAB_EXIT_HOOKS+=("$1"); }

# lab_keep: disarms the teardown trap (the lab stays up; `scripts/lab.sh down SUFFIX` ends it).
lab_keep() { trap - EXIT INT TERM; }

lab__on_exit() {
  local rc=$1 i
  trap - EXIT INT TERM
  set +e
  for ((i = ${#LAB_EXIT_HOOKS[@]} - 1; i >= 0; i--)); do
    eval "${LAB_EXIT_HOOKS[i]}"
  done
  # A lab already taken down (the demo's first part) has no suffix left to take down.
  [ -z "${LAB_SUFFIX:-}" ] || lab_down
  exit "$rc"
}

lab__sysctl() { # NS KEY VALUE, through /proc so that procps need not be installed
  ip netns exec "$1" sh -c "echo $3 > /proc/sys/${2//.//}"
}

# lab_host NAME: a namespace with lo up and IPv6 DAD off.
lab_host() {
  local ns
  ns=$(lab_ns "$1")
  [[ $1 =~ ^[a-z0-9]{1,8}$ ]] || lab__die "host name '$1': use 1-8 of [a-z0-9]" || return
  ip netns add "$ns" || return
  ip -n "$ns" link set lo up
  # Every address the lab adds is nodad already; this covers addresses others add later
  # (a TUN's HIT, a test's extra address) so that none sits tentative.
  lab__sysctl "$ns" net.ipv6.conf.all.accept_dad 0
  lab__sysctl "$ns" net.ipv6.conf.default.accept_dad 0
}

# lab_router NAME: turns on IPv4 and IPv6 forwarding in host NAME.
lab_router() {
  local ns
  ns=$(lab_ns "$1")
  lab__sysctl "$ns" net.ipv4.ip_forward 1
  lab__sysctl "$ns" net.ipv6.conf.all.forwarding 1
}

lab__ipv4_int() { # a.b.c.d -> integer
  local IFS=. a b c d
  read -r a b c d <<<"$1"
  echo $(((a << 24) | (b << 16) | (c << 8) | d))
}

lab__ipv4_str() { # integer -> a.b.c.d
  echo "$((($1 >> 24) & 255)).$((($1 >> 16) & 255)).$((($1 >> 8) & 255)).$(($1 & 255))"
}

# Prints the addresses (with prefix) of hosts 1 and 2 in SUBNET, after checking that SUBNET
# lies in the documentation ranges the lab may use.
lab__hosts_of() {
  local subnet=$1 base=${1%/*} len=${1#*/}
  [[ $subnet == */* && $len =~ ^[0-9]+$ ]] || lab__die "subnet '$subnet': want ADDRESS/LEN" || return
  if [[ $base == *:* ]]; then
    [[ ${base,,} == 2001:db8:* ]] || lab__die "subnet '$subnet' is outside 2001:db8::/32" || return
    [[ $base == *:: ]] || lab__die "subnet '$subnet': write the network as PREFIX::/LEN" || return
    [ "$len" -ge 32 ] && [ "$len" -le 126 ] || lab__die "subnet '$subnet': length 32-126" || return
    echo "${base}1/$len ${base}2/$len"
  else
    [[ $base =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]] || lab__die "subnet '$subnet': not IPv4" || return
    [[ $base != 192.0.2.* ]] || lab__die "192.0.2.0/24 may hold this machine's own address; use 198.51.100.0/24 or 203.0.113.0/24" || return
    [[ $base == 198.51.100.* || $base == 203.0.113.* ]] ||
      lab__die "subnet '$subnet' is outside 198.51.100.0/24 and 203.0.113.0/24" || return
    [ "$len" -ge 24 ] && [ "$len" -le 30 ] || lab__die "subnet '$subnet': length 24-30" || return
    local net mask
    mask=$(((0xffffffff << (32 - len)) & 0xffffffff))
    net=$(($(lab__ipv4_int "$base") & mask))
    echo "$(lab__ipv4_str $((net + 1)))/$len $(lab__ipv4_str $((net + 2)))/$len"
  fi
}

# lab_link A B SUBNET...: a veth pair between hosts A and B; in each SUBNET A gets the first
# host address and B the second (198.51.100.0/25 -> .1 and .2; 2001:db8:1::/64 -> ::1, ::2).
lab_link() {
  local a=$1 b=$2 nsa nsb n ifa ifb subnet pair addr_a addr_b
  shift 2
  nsa=$(lab_ns "$a")
  nsb=$(lab_ns "$b")
  n=$(($(cat "$(lab_state)/links") + 1))
  echo "$n" >"$(lab_state)/links"
  ifa="hb${n}a-$LAB_SUFFIX"
  ifb="hb${n}b-$LAB_SUFFIX"
  # Created inside A with its peer placed straight into B: neither end ever exists in the
  # root namespace.
  ip -n "$nsa" link add "$ifa" txqueuelen "$LAB_TXQUEUELEN" type veth \
    peer name "$ifb" txqueuelen "$LAB_TXQUEUELEN" netns "$nsb" || return
  echo "$a $b $ifa" >>"$(lab_state)/ifs"
  echo "$b $a $ifb" >>"$(lab_state)/ifs"
  for subnet in "$@"; do
    pair=$(lab__hosts_of "$subnet") || return
    read -r addr_a addr_b <<<"$pair"
    if [[ $subnet == *:* ]]; then
      ip -n "$nsa" addr add "$addr_a" dev "$ifa" nodad || return
      ip -n "$nsb" addr add "$addr_b" dev "$ifb" nodad || return
    else
      ip -n "$nsa" addr add "$addr_a" dev "$ifa" || return
      ip -n "$nsb" addr add "$addr_b" dev "$ifb" || return
    fi
  done
  ip -n "$nsa" link set "$ifa" up
  ip -n "$nsb" link set "$ifb" up
}

# lab_if A B: the name of A's interface toward B (the first link between them).
lab_if() {
  awk -v a="$1" -v b="$2" '$1 == a && $2 == b { print $3; exit }' "$(lab_state)/ifs"
}

# lab_exec NAME CMD...: runs CMD inside host NAME.
lab_exec() {
  local ns
  ns=$(lab_ns "$1")
  shift
  ip netns exec "$ns" "$@"
}

# lab_spawn NAME CMD...: starts CMD in the background inside host NAME and tracks its PID
# (in LAB_PID too) so that teardown kills it. Redirect its output on the lab_spawn line.
lab_spawn() {
  local ns
  ns=$(lab_ns "$1")
  shift
  # ip netns exec execs CMD in place, so $! is CMD's own PID.
  ip netns exec "$ns" "$@" &
  LAB_PID=$!
  echo "$LAB_PID" >>"$(lab_state)/pids"
}

# lab_resolv NAME LINE...: the resolv.conf of host NAME (ip netns exec shows
# /etc/netns/<namespace>/resolv.conf as /etc/resolv.conf); teardown removes it.
lab_resolv() {
  local ns
  ns=$(lab_ns "$1")
  shift
  mkdir -p "/etc/netns/$ns" && printf '%s\n' "$@" >"/etc/netns/$ns/resolv.conf"
}

lab__netns_inode() { stat -L -c %i "$1" 2>/dev/null; }

# lab_down [SUFFIX]: kills the processes the lab started, then deletes its namespaces (and
# with them the veths and any TUN device inside). Safe to call twice.
lab_down() {
  local suffix=${1:-${LAB_SUFFIX:-}} state ns pid inode i
  [ -n "$suffix" ] || lab__die "lab_down: which suffix?" || return
  [[ $suffix =~ ^[0-9a-f]{6}$ ]] || lab__die "lab_down: '$suffix' is not a lab suffix" || return
  state=$LAB_STATE_ROOT/$suffix
  local -a namespaces=() inodes=()
  while read -r ns _; do
    [[ $ns == hb-*-"$suffix" ]] && namespaces+=("$ns")
  done < <(ip netns list)
  for ns in "${namespaces[@]}"; do
    inodes+=("$(lab__netns_inode "/run/netns/$ns")")
  done

  # A tracked PID is killed only while it still runs inside one of our namespaces, so a PID
  # the kernel has since reused for something else is left alone.
  local -a victims=()
  if [ -f "$state/pids" ]; then
    while read -r pid; do
      [ -n "$pid" ] || continue
      inode=$(lab__netns_inode "/proc/$pid/ns/net") || continue
      for i in "${inodes[@]}"; do
        [ "$inode" = "$i" ] && victims+=("$pid") && break
      done
    done <"$state/pids"
  fi
  # Processes started into our namespaces some other way (ip netns exec ... &) would keep a
  # deleted namespace alive, and a TUN device in it; they are the lab's too.
  for ns in "${namespaces[@]}"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do
      victims+=("$pid")
    done
  done
  if [ "${#victims[@]}" -gt 0 ]; then
    kill -TERM "${victims[@]}" 2>/dev/null
    for i in $(seq 20); do
      local alive=()
      for pid in "${victims[@]}"; do
        kill -0 "$pid" 2>/dev/null && alive+=("$pid")
      done
      [ "${#alive[@]}" -eq 0 ] && break
      sleep 0.1
    done
    for pid in "${victims[@]}"; do
      kill -KILL "$pid" 2>/dev/null
    done
  fi
  for ns in "${namespaces[@]}"; do
    ip netns del "$ns" 2>/dev/null || echo "lab.sh: could not delete namespace $ns" >&2
  done
  rm -rf /etc/netns/hb-*-"$suffix"
  # LAB_LOGS=DIR keeps the lab's state (node logs, configs) for a look after the fact.
  [ -z "${LAB_LOGS:-}" ] || { mkdir -p "$LAB_LOGS" && cp -r "$state" "$LAB_LOGS/"; }
  rm -rf "$state"
  [ "$suffix" != "${LAB_SUFFIX:-}" ] || unset LAB_SUFFIX
  return 0
}

# lab_list: suffixes of the labs present on this machine.
lab_list() {
  ip netns list | sed -n 's/^hb-[a-z0-9]*-\([0-9a-f]\{6\}\)\( .*\)\{0,1\}$/\1/p' | sort -u
}

lab_one() {
  lab_host a
}

lab_two() {
  lab_host a
  lab_host b
  lab_link a b 198.51.100.0/24 2001:db8:1::/64
}

lab_routed() {
  lab_host a
  lab_host r
  lab_host b
  lab_router r
  lab_link r a 198.51.100.0/25 2001:db8:1::/64
  lab_link r b 203.0.113.0/25 2001:db8:2::/64
  lab_exec a ip route add default via 198.51.100.1
  lab_exec a ip -6 route add default via 2001:db8:1::1
  lab_exec b ip route add default via 203.0.113.1
  lab_exec b ip -6 route add default via 2001:db8:2::1
}

lab__describe() {
  local ns
  for ns in $(ip netns list | awk '{print $1}' | grep -- "-$LAB_SUFFIX\$" | sort); do
    echo "  $ns:"
    # Name and addresses; the link-locals and the momentary operstate only distract.
    ip -n "$ns" -br addr show | awk '$1 != "lo" {
      line = "    " $1; for (i = 3; i <= NF; i++) if ($i !~ /^fe80:/) line = line " " $i; print line }'
  done
}

# Run as a command, not sourced (`return` works only in a sourced file or a function).
if ! (return 0 2>/dev/null); then
  set -euo pipefail
  case "${1:-}" in
  up)
    topology=${2:-}
    case "$topology" in
    one | two | routed) ;;
    *) lab__die "usage: $0 up one|two|routed" ;;
    esac
    lab_init
    "lab_$topology"
    lab_keep
    {
      echo "lab '$topology' is up (suffix $LAB_SUFFIX):"
      lab__describe
      echo "  run inside:  ip netns exec $(lab_ns a) CMD"
      echo "  tear down:   $0 down $LAB_SUFFIX"
    } >&2
    echo "$LAB_SUFFIX"
    ;;
  down)
    [ -n "${2:-}" ] || lab__die "usage: $0 down SUFFIX (see $0 list)"
    lab_down "$2"
    ;;
  list)
    lab_list
    ;;
  *)
    lab__die "usage: $0 up one|two|routed | down SUFFIX | list"
    ;;
  esac
fi
