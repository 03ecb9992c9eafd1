# hipbone nodes on the NAT lab (tests/lab/nat_topology.sh): a relay server R and two clients
# A and B that register with it and know each other only by HIT and R's address. Shared by
# tests/lab/nat.sh and scripts/bench-nat.sh. Source after common.sh and nat_topology.sh, and
# call nat_nodes_init once the topology is up.

# nat_nodes_init: keys, HITs and configs of R, A and B.
nat_nodes_init() {
  dir=$(lab_state)
  local n
  for n in a b r s; do node_key "$n" >/dev/null; done
  HIT_A=$(node_hit a)
  HIT_B=$(node_hit b)
  HIT_R=$(node_hit r)
  R_ADDR=$(nat_addr r)
  relay_config
  client_config a b "$HIT_B"
  client_config b a "$HIT_A"
}

# relay_config [EXTRA_NAT_KEYS]: R serves as relay.
relay_config() {
  cat >"$dir/r.toml" <<TOML
[interface]
identity = "$(node_key r)"
control = "$dir/r.sock"

[nat]
relay = true
${1:-}
TOML
}

# client_config NAME PEER_NAME PEER_HIT: registers with R, reaches the peer through R.
client_config() {
  cat >"$dir/$1.toml" <<TOML
[interface]
identity = "$(node_key "$1")"
control = "$dir/$1.sock"

[nat]
keepalive_seconds = 2

[[peer]]
hit = "$HIT_R"
locators = ["$R_ADDR:10500"]
name = "relay"
relay = true

[[peer]]
hit = "$3"
locators = ["$R_ADDR:10500"]
name = "$2"
TOML
}

# registered NAME: the node's relay reports where it sees it.
registered() {
  for _ in $(seq 50); do
    node_field "$1" 's["nat"]' 2>/dev/null | grep -q -e 'seen at' -e '^none' && return 0
    sleep 0.1
  done
  return 1
}

# path NAME PEER_NAME: the association's path as `hipbone status` shows it.
path() {
  node_field "$1" "[x.get('path') for x in s['associations'] if x['name'] == '$2'][0]" 2>/dev/null
}

# path_settles NAME PEER_NAME WANT: waits (10 s at most) for the path to start with WANT.
path_settles() {
  for _ in $(seq 50); do
    case "$(path "$1" "$2")" in "$3"*) return 0 ;; esac
    sleep 0.2
  done
  echo "    $1's path to $2: $(path "$1" "$2")" >&2
  return 1
}

nodes_up() { node_up r && node_up b && node_up a && registered a && registered b; }
nodes_down() { node_down a; node_down b; node_down r; }

# expected NAT_A NAT_B: the path hole punching allows (docs/NAT.md §8): relayed for a
# symmetric NAT against a port-restricted or symmetric one, direct otherwise.
expected() {
  case "$1/$2" in
  port_restricted/symmetric | symmetric/port_restricted | symmetric/symmetric) echo relayed ;;
  *) echo direct ;;
  esac
}
