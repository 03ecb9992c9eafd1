# The NAT lab topology, for tests that need hosts behind NATs of a chosen kind. A library on top
# of scripts/lab.sh (source tests/lab/common.sh first, or scripts/lab.sh): it runs nothing when
# sourced.
# shellcheck shell=bash
#
#   source tests/lab/common.sh
#   source tests/lab/nat_topology.sh
#   nat_topology_up                  # lab_init (and its teardown trap) if no lab yet, then the
#                                    # hosts below; both NATs start as port_restricted
#   nat_set symmetric NA             # or none | full_cone | port_restricted; NA or NB
#   nat_addr r                       # public addresses, for configs: 203.0.113.2
#   lab_exec a ...                   # the hosts are lab hosts: lab_exec, lab_spawn, lab_if
#
# Public network: the router namespace "inet" (no NAT, no filter) with one /28 per public host.
# Private LANs: one /28 per NAT. All from the documentation ranges LAB.md allows; 203.0.113.0/24
# plays the public Internet and 198.51.100.0/24 the private side.
#
#   ┌ hb-inet: router, no NAT, no filter ──────────────┐
#   │ 203.0.113.1/28  ─────────────────────────────────┼──── R  203.0.113.2/28   (relay)
#   │ 203.0.113.17/28 ─────────────────────────────────┼──── S  203.0.113.18/28  (second server)
#   │ 203.0.113.33/28            203.0.113.49/28       │
#   └───────┬───────────────────────────┬──────────────┘
#   ┌ hb-na ┴─────────────────┐ ┌ hb-nb ┴─────────────────┐
#   │ WAN 203.0.113.34/28     │ │ WAN 203.0.113.50/28     │
#   │ LAN 198.51.100.1/28     │ │ LAN 198.51.100.17/28    │
#   └───────┬─────────────────┘ └───────┬─────────────────┘
#   ┌ hb-a ─┴─────────────────┐ ┌ hb-b ─┴─────────────────┐
#   │ 198.51.100.2/28         │ │ 198.51.100.18/28        │
#   │ default via NA          │ │ default via NB          │
#   └─────────────────────────┘ └─────────────────────────┘
#
# Namespaces are hb-{inet,r,s,na,nb,a,b}-SUFFIX (lab.sh's per-run suffix, so runs never clash);
# links and interface names are lab.sh's (lab_if na inet is NA's WAN, lab_if na a its LAN).
# R, S, NA and NB route by default through inet; inet knows only the public /28s, so a private
# address is unreachable from the public side except in mode none. IPv4 only (NAT is an IPv4
# matter; the links carry no IPv6 addresses).
#
# NAT types (nat_set TYPE NS), one nft table "hbnat" in the NAT's namespace, rules per LAB.md:
#   none             plain routing, no translation, no filter: inet gets a route to the LAN
#                    via the NAT's WAN address, so the inside host's own address (198.51.100.2
#                    for A) is its public address and anyone can reach it.
#   port_restricted  masquerade on WAN (Linux keeps the source port when it can: endpoint-
#                    independent mapping); WAN input only ct state established,related; forward
#                    policy drop except LAN->WAN and established,related. A mapping answers only
#                    the exact IP:port it was opened towards.
#   full_cone        port_restricted plus a prerouting "dnat to <inside host>" of UDP
#                    1024-65535 arriving on WAN (and forward accepts ct status dnat). Beware: this
#                    is a static forward of the whole high port range, not a per-mapping cone:
#                    a packet reaches the inside host on a port it never used, before it sent
#                    anything and after its conntrack entry expired.
#   symmetric        as port_restricted with "masquerade fully-random": a new random public
#                    port for every new destination IP:port.
#
# Rebinding. conntrack -F (nat_flush) alone does NOT move a cone NAT's mapping: the next packet
# makes a new entry and masquerade picks the same, still free, source port again. Only
# symmetric gets a new (random) port from a flush. nat_rebind gives every type a new public
# port: it flushes and, for port_restricted and full_cone, replaces masquerade for UDP
# 1024-65535 by "snat to WAN : udp sport ^ N" (and the full-cone dnat by "udp dport ^ N"), N the
# number of rebinds since nat_set (1..1023, so ports stay in 1024-65535). The mapping stays
# endpoint-independent; only the port moves. ("masquerade random" is no way out: on this kernel
# it draws a random port per destination, like fully-random.)
#
# Functions:
#   nat_topology_up              builds the lab (lab_init first if LAB_SUFFIX is unset); the
#                                lab's own teardown (lab_down, on exit) removes it
#   nat_set TYPE NS              NS = NA | NB (or na | nb); reloads the rules, flushes conntrack,
#                                sets inet's route for mode none
#   nat_type NS                  the current type
#   nat_flush NS                 conntrack -F in NS (drops every mapping)
#   nat_rebind NS                new public ports for every inside socket (see above)
#   nat_udp_timeout NS SECONDS   nf_conntrack_udp_timeout and _udp_timeout_stream in NS. These
#                                sysctls are per network namespace on this kernel (6.18):
#                                setting them in NA leaves NB, inet and the root namespace at
#                                their defaults (30 and 120). The new value applies when an
#                                entry next sees a packet; nat_set does not reset it.
#   nat_addr HOST                the public IPv4 address of r, s, na, nb, and of a and b as the
#                                public side sees them (their NAT's WAN address; their own
#                                address in mode none)
#   nat_lan_addr HOST            the own address of a or b (198.51.100.2, 198.51.100.18), or
#                                of a NAT on its LAN
#   nat_behind HOST              na for a, nb for b
#   nat_describe                 the namespaces, interfaces, addresses and NAT types

NAT_HOSTS="inet r s na nb a b"
NAT_R_ADDR=203.0.113.2
NAT_S_ADDR=203.0.113.18
NAT_NA_WAN=203.0.113.34
NAT_NB_WAN=203.0.113.50
NAT_NA_LAN=198.51.100.1
NAT_NB_LAN=198.51.100.17
NAT_A_ADDR=198.51.100.2
NAT_B_ADDR=198.51.100.18
NAT_A_NET=198.51.100.0/28
NAT_B_NET=198.51.100.16/28

nat__die() {
  echo "nat_topology.sh: $*" >&2
  return 1
}

# NS as given (NA, nb, ...) -> na | nb
nat__nat() {
  case ${1,,} in
  na | nb) echo "${1,,}" ;;
  *) nat__die "'$1' is not a NAT (NA or NB)" ;;
  esac
}

nat_behind() {
  case $1 in
  a) echo na ;;
  b) echo nb ;;
  *) nat__die "'$1' is behind no NAT" ;;
  esac
}

nat__inside() { [ "$1" = na ] && echo a || echo b; }

nat__state() { echo "$(lab_state)/nat-$1"; } # holds "TYPE REBINDS"

nat_topology_up() {
  if [ -z "${LAB_SUFFIX:-}" ]; then
    lab_init || return
  fi
  local h
  for h in $NAT_HOSTS; do
    lab_host "$h" || return
  done
  lab_router inet
  lab_router na
  lab_router nb
  lab_link inet r 203.0.113.0/28 &&
    lab_link inet s 203.0.113.16/28 &&
    lab_link inet na 203.0.113.32/28 &&
    lab_link inet nb 203.0.113.48/28 &&
    lab_link na a "$NAT_A_NET" &&
    lab_link nb b "$NAT_B_NET" || return
  lab_exec r ip route add default via 203.0.113.1 &&
    lab_exec s ip route add default via 203.0.113.17 &&
    lab_exec na ip route add default via 203.0.113.33 &&
    lab_exec nb ip route add default via 203.0.113.49 &&
    lab_exec a ip route add default via "$NAT_NA_LAN" &&
    lab_exec b ip route add default via "$NAT_NB_LAN" || return
  nat_set port_restricted na && nat_set port_restricted nb
}

# nat__ruleset TYPE NS REBINDS: the nft script for NAT NS.
nat__ruleset() {
  local type=$1 n=$2 k=$3 wan lan inside wan_addr
  wan=$(lab_if "$n" inet)
  lan=$(lab_if "$n" "$(nat__inside "$n")")
  inside=$(nat_lan_addr "$(nat__inside "$n")")
  wan_addr=$(nat_addr "$n")
  echo "flush ruleset"
  [ "$type" = none ] && return
  local masq="masquerade" snat="" dnat=""
  [ "$type" = symmetric ] && masq="masquerade fully-random"
  if [ "$k" -gt 0 ] && [ "$type" != symmetric ]; then
    snat="oifname \"$wan\" udp sport 1024-65535 snat ip to $wan_addr : udp sport ^ $k"
  fi
  if [ "$type" = full_cone ]; then
    dnat="iifname \"$wan\" udp dport 1024-65535 dnat ip to $inside"
    [ "$k" -gt 0 ] && dnat="$dnat : udp dport ^ $k"
  fi
  cat <<NFT
table ip hbnat {
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    $dnat
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    $snat
    oifname "$wan" $masq
  }
  chain input {
    type filter hook input priority filter; policy accept;
    iifname "$wan" ct state established,related accept
    iifname "$wan" drop
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
    iifname "$lan" oifname "$wan" accept
    ct state established,related accept
    $([ "$type" = full_cone ] && echo "iifname \"$wan\" oifname \"$lan\" ct status dnat accept")
  }
}
NFT
}

# nat__apply NS TYPE REBINDS
nat__apply() {
  local n=$1 type=$2 k=$3 net
  nat__ruleset "$type" "$n" "$k" | lab_exec "$n" nft -f - || return
  [ "$n" = na ] && net=$NAT_A_NET || net=$NAT_B_NET
  if [ "$type" = none ]; then
    lab_exec inet ip route replace "$net" via "$(nat_addr "$n")" || return
  else
    lab_exec inet ip route del "$net" 2>/dev/null
  fi
  echo "$type $k" >"$(nat__state "$n")"
  nat_flush "$n"
}

nat_set() {
  local type=$1 n
  n=$(nat__nat "${2:-}") || return
  case $type in
  none | full_cone | port_restricted | symmetric) ;;
  *) nat__die "NAT type '$type': none, full_cone, port_restricted or symmetric" || return ;;
  esac
  nat__apply "$n" "$type" 0
}

nat_type() {
  local n type _k
  n=$(nat__nat "$1") || return
  read -r type _k <"$(nat__state "$n")" && echo "$type"
}

nat_flush() {
  local n
  n=$(nat__nat "$1") || return
  lab_exec "$n" conntrack -F >/dev/null 2>&1 || nat__die "conntrack -F failed in $n"
}

nat_rebind() {
  local n type k
  n=$(nat__nat "$1") || return
  read -r type k <"$(nat__state "$n")"
  case $type in
  none) nat__die "$n does no translation: nothing to rebind" ;;
  symmetric) nat_flush "$n" ;;
  *)
    [ "$k" -lt 1023 ] || nat__die "$n: no rebinds left (1023)" || return
    nat__apply "$n" "$type" $((k + 1))
    ;;
  esac
}

nat_udp_timeout() {
  local n=$1 secs=$2 key
  n=$(nat__nat "$n") || return
  [[ $secs =~ ^[0-9]+$ ]] && [ "$secs" -gt 0 ] || nat__die "timeout '$secs': whole seconds" || return
  for key in nf_conntrack_udp_timeout nf_conntrack_udp_timeout_stream; do
    lab_exec "$n" sh -c "echo $secs > /proc/sys/net/netfilter/$key" || return
  done
}

nat_addr() {
  case $1 in
  r) echo "$NAT_R_ADDR" ;;
  s) echo "$NAT_S_ADDR" ;;
  na) echo "$NAT_NA_WAN" ;;
  nb) echo "$NAT_NB_WAN" ;;
  a | b)
    local n
    n=$(nat_behind "$1")
    if [ "$(nat_type "$n")" = none ]; then nat_lan_addr "$1"; else nat_addr "$n"; fi
    ;;
  *) nat__die "no host '$1' (r, s, na, nb, a, b)" ;;
  esac
}

nat_lan_addr() {
  case $1 in
  a) echo "$NAT_A_ADDR" ;;
  b) echo "$NAT_B_ADDR" ;;
  na) echo "$NAT_NA_LAN" ;;
  nb) echo "$NAT_NB_LAN" ;;
  *) nat__die "'$1' has no LAN address (a, b, na, nb)" ;;
  esac
}

nat_describe() {
  local h
  for h in $NAT_HOSTS; do
    echo "  $(lab_ns "$h")$(case $h in na | nb) echo " ($(nat_type "$h"))" ;; esac):"
    lab_exec "$h" ip -4 -br addr show | awk '$1 != "lo" { sub(/@.*/, "", $1); print "    " $1, $3 }'
  done
}
