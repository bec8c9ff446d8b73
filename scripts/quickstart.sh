#!/usr/bin/env bash
# The first command of the README: a plexd mesh of three nodes on this machine.
#
#   sudo scripts/quickstart.sh           # bring the mesh up, show it, keep it running until Ctrl-C
#   sudo scripts/quickstart.sh --check   # bring it up, check it, tear it down (exit 0 = it works; CI)
#   sudo scripts/quickstart.sh --keep    # bring it up and leave it running after the script exits
#   sudo scripts/quickstart.sh --down    # tear down a mesh left by --keep (or by a killed run)
#
# More options:
#   --no-keep          the same as --check
#   --nodes N          number of nodes, 2-9 (3)
#   --timeout S        how long to wait for the full mesh, in seconds (60)
#   --log-level LEVEL  the suites' log level: debug, info, notice, warning, error (info)
#   --build            run an incremental build first even when every binary exists
#   -h, --help         this text
#
# As root on Debian 12: builds plexd if a binary is missing ($PLEXD_BUILD_DIR,
# default build/release; $PLEXD_JOBS parallel jobs), starts the control-plane
# emulator (plexd-cp-emulator) in the root network namespace on 10.211.0.254 and
# the nodes in network namespaces pxqs-a, pxqs-b, ... (10.211.0.1, .2, ...),
# joined by a bridge in namespace pxqs-hub. Each node runs the real suite under
# plexd-supervisor, with wireguard-go as its WireGuard (interface pxqs-<node>-wg).
# It waits until every node has a handshake with every other node, pings every
# pair over the mesh, prints a status table and what to try next. Ctrl-C (or
# --down after --keep) stops the suites and removes everything it created: the
# processes (by pid), the namespaces, the veth, the temporary directory.
# A failed bring-up is torn down too, except with --keep (left for inspection).
#
# Needs wireguard-go, wireguard-tools, iproute2, iputils-ping and python3. The
# daemon users come from systemd/plexd.sysusers (scripts/setup.sh creates them);
# without them the daemons run as nobody (--dev-user-fallback, development only).
# Record of a running mesh: /run/plexd-quickstart/state.
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${PLEXD_BUILD_DIR:-$src/build/release}
mode=foreground   # foreground | check | keep | down
nodes_wanted=3
timeout_s=60
log_level=""
force_build=0

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
die() { echo "quickstart: $*" >&2; exit 1; }
say() { echo "quickstart: $*"; }

while [ $# -gt 0 ]; do
  case $1 in
    --check|--no-keep) mode=check ;;
    --keep) mode=keep ;;
    --down) mode=down ;;
    --nodes) [ $# -ge 2 ] || die "--nodes needs a number"; nodes_wanted=$2; shift ;;
    --timeout) [ $# -ge 2 ] || die "--timeout needs seconds"; timeout_s=$2; shift ;;
    --log-level) [ $# -ge 2 ] || die "--log-level needs a level"; log_level=$2; shift ;;
    --build) force_build=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "quickstart: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done
case $nodes_wanted in [2-9]) ;; *) die "--nodes takes 2 to 9" ;; esac
case $timeout_s in ''|*[!0-9]*) die "--timeout takes whole seconds" ;; esac

if [ "$(id -u)" -ne 0 ]; then
  echo "quickstart: run as root (sudo $0): it creates network namespaces, and the supervisor starts each daemon as its own user" >&2
  exit 1
fi

# Names. Everything this script creates is recorded in the state file as it is
# created; teardown removes exactly what is recorded there.
state_dir=/run/plexd-quickstart
state_file=$state_dir/state
hub_ns=pxqs-hub
root_veth=pxqs-r
net=10.211.0
emu_ip=$net.254
domain_cidr=100.80.0.0/16
project_id=0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0a1

sup_bin=$build/plexd-supervisor/plexd-supervisor
emu_bin=$build/tests/emulator/plexd-cp-emulator
ctl_bin=$build/plexdctl/plexdctl

# --- state -------------------------------------------------------------------
owner_pid=""; work=""; emu_pid=""
created_ns=(); created_links=(); node_names=(); listener_pids=()
declare -A sup_pid=() node_ifname=() node_ns=() node_ip=() node_mesh=() node_id=() node_key=()

save_state() {
  mkdir -p "$state_dir"
  chmod 0700 "$state_dir"
  {
    echo "# plexd quickstart mesh; remove with: $0 --down"
    declare -p owner_pid mode work emu_pid created_ns created_links node_names sup_pid node_ifname node_ns
  } | sed 's/^declare /declare -g /' > "$state_file.new"
  mv -f "$state_file.new" "$state_file"
}

# --- processes ---------------------------------------------------------------
alive() {  # a live (not zombie) process
  local st
  [ -n "${1:-}" ] && [ -r "/proc/$1/stat" ] || return 1
  st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [ -n "$st" ] && [ "$st" != Z ]
}
cmdline_of() { { tr '\0' ' ' < "/proc/$1/cmdline"; } 2>/dev/null || true; }
# Whether pid $1 is alive and its command line contains $2.
is_ours() { alive "$1" && case "$(cmdline_of "$1")" in *"$2"*) true ;; *) false ;; esac; }

# Runs a command in the background in its own session (Ctrl-C reaches only this
# script, which then stops everything in order), with no inherited descriptors
# beyond stdio (no lock file kept open by a long-lived daemon). $! is its pid.
spawn() {
  (
    for fd in "/proc/$BASHPID/fd/"*; do
      fd=${fd##*/}
      [ "$fd" -gt 2 ] 2>/dev/null && eval "exec $fd>&-"
    done
    exec setsid "$@"
  ) &
}

# Stops pid $1 (if its command line still contains $2): SIGTERM, up to $3
# tenths of a second, then SIGKILL. stop_rc: its exit status when it was our
# child, 127 when it was not (a run left by --keep), "" when it was gone.
stop_pid() {
  local pid=$1 mark=$2 tenths=$3 i
  stop_rc=""
  is_ours "$pid" "$mark" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < tenths; i++)); do alive "$pid" || break; sleep 0.1; done
  if alive "$pid"; then
    echo "quickstart: pid $pid did not stop within $((tenths / 10)) s; killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  stop_rc=0
  wait "$pid" 2>/dev/null || stop_rc=$?
}

teardown() {
  set +e
  trap '' INT TERM
  local n pid p cmd ifn leftovers
  teardown_failed=0
  for pid in "${listener_pids[@]}"; do kill "$pid" 2>/dev/null; done
  # The suites first: the supervisor stops its daemons (apid, ctld, netd).
  for n in "${node_names[@]}"; do
    pid=${sup_pid[$n]:-}
    [ -n "$pid" ] || continue
    stop_pid "$pid" "$work/node-$n" 150
    if [ -n "$stop_rc" ] && [ "$stop_rc" != 0 ] && [ "$stop_rc" != 127 ]; then
      echo "quickstart: the supervisor of node $n exited with status $stop_rc when stopped" >&2
      teardown_failed=1
    fi
  done
  # Any daemon still alive (a supervisor that had to be killed): by pid, when
  # its command line names a node's config (plexd-<daemon> --config DIR/config.yaml).
  if [ -n "$work" ]; then
    for p in /proc/[0-9]*; do
      pid=${p#/proc/}
      cmd=$(cmdline_of "$pid")
      case $cmd in *plexd-*" --config $work/node-"*) kill -KILL "$pid" 2>/dev/null ;; esac
    done
  fi
  # wireguard-go outlives netd by design (tunnels survive a netd restart):
  # ours are the ones serving one of our interfaces (wireguard-go -f IFNAME).
  for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    cmd=$(cmdline_of "$pid")
    case $cmd in *wireguard-go*) ;; *) continue ;; esac
    for n in "${node_names[@]}"; do
      ifn=${node_ifname[$n]:-}
      [ -n "$ifn" ] || continue
      case "$cmd" in *" $ifn ") kill -KILL "$pid" 2>/dev/null ;; esac
    done
  done
  for n in "${node_names[@]}"; do
    ifn=${node_ifname[$n]:-}
    [ -n "$ifn" ] && rm -f "/run/wireguard/$ifn.sock"
  done
  for n in "${created_ns[@]}"; do ip netns del "$n" 2>/dev/null; done
  for n in "${created_links[@]}"; do
    ip link show "$n" >/dev/null 2>&1 && ip link del "$n" 2>/dev/null
  done
  if [ -n "$emu_pid" ]; then stop_pid "$emu_pid" "$work/emulator" 50; fi
  # What is left of ours?
  leftovers=""
  for n in "${created_ns[@]}"; do [ -e "/run/netns/$n" ] && leftovers+=" netns:$n"; done
  for n in "${created_links[@]}"; do ip link show "$n" >/dev/null 2>&1 && leftovers+=" link:$n"; done
  for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    cmd=$(cmdline_of "$pid")
    case $cmd in
      *wireguard-go*) for n in "${node_names[@]}"; do
                        case "$cmd" in *" ${node_ifname[$n]:-none} ") alive "$pid" && leftovers+=" pid:$pid($cmd)" ;; esac
                      done ;;
      *plexd-*) [ -n "$work" ] && case $cmd in *" $work/"*) alive "$pid" && leftovers+=" pid:$pid($cmd)" ;; esac ;;
    esac
  done
  if [ -n "$leftovers" ]; then
    echo "quickstart: could not remove:$leftovers" >&2
    teardown_failed=1
    return
  fi
  if [ -n "$work" ] && [ -d "$work" ]; then rm -rf "$work"; fi
  rm -f "$state_file"
  created_ns=(); created_links=(); node_names=(); emu_pid=""; work=""
}

# --- --down and leftovers ------------------------------------------------------
load_state() { # shellcheck disable=SC1090
  source "$state_file"
}

if [ "$mode" = down ]; then
  if [ ! -f "$state_file" ]; then
    if ip netns list 2>/dev/null | grep -q '^pxqs-'; then
      die "no record of a quickstart mesh ($state_file), but there are namespaces named pxqs-*; remove them by hand if they are yours: ip netns del NAME"
    fi
    say "nothing to tear down"
    exit 0
  fi
  load_state
  if [ -n "$owner_pid" ] && is_ours "$owner_pid" quickstart; then
    say "a quickstart (pid $owner_pid) is running this mesh; stopping it"
    kill -TERM "$owner_pid"
    for _ in $(seq 1 600); do
      if [ ! -f "$state_file" ] || ! alive "$owner_pid"; then break; fi
      sleep 0.1
    done
    alive "$owner_pid" && die "pid $owner_pid is still running after 60 s"
    [ -f "$state_file" ] && die "pid $owner_pid exited but left $state_file; run --down again"
    say "torn down"
    exit 0
  fi
  say "tearing down the mesh in ${work:-?}"
  teardown
  [ "$teardown_failed" = 0 ] || exit 1
  say "torn down"
  exit 0
fi

# One quickstart at a time (the names are fixed).
mkdir -p "$state_dir"
chmod 0700 "$state_dir"
exec 9>"$state_dir/lock"
flock -n 9 || die "another quickstart is starting or running (lock $state_dir/lock)"
if [ -f "$state_file" ]; then
  prev_mode=$mode
  load_state
  if [ -n "$owner_pid" ] && is_ours "$owner_pid" quickstart; then
    die "a quickstart mesh is running (pid $owner_pid); stop it with Ctrl-C there or: $0 --down"
  fi
  if [ "$mode" = keep ] && [ -z "$owner_pid" ]; then
    die "a quickstart mesh left by --keep is running (in $work); remove it first: $0 --down"
  fi
  say "removing what a previous run (pid ${owner_pid:-?}) left behind"
  teardown
  [ "$teardown_failed" = 0 ] || die "could not clean up the previous run; see above"
  mode=$prev_mode
fi
if ip netns list 2>/dev/null | grep -q '^pxqs-' || ip link show "$root_veth" >/dev/null 2>&1; then
  die "namespaces pxqs-* or link $root_veth exist but were not created by a recorded quickstart; remove them first (ip netns del NAME, ip link del $root_veth)"
fi
if ip -4 -o addr show 2>/dev/null | grep -q " $net\." || [ -n "$(ip -4 route show "$net.0/24" 2>/dev/null)" ]; then
  die "$net.0/24 is already in use on this machine; the quickstart needs it for its namespaces"
fi

# --- dependencies and build ---------------------------------------------------
for tool in wg wireguard-go ip ping python3 setsid flock; do
  if ! command -v "$tool" >/dev/null; then
    case $tool in
      wg|wireguard-go) die "$tool is missing: apt-get install wireguard-go wireguard-tools" ;;
      ip) die "ip is missing: apt-get install iproute2" ;;
      ping) die "ping is missing: apt-get install iputils-ping" ;;
      python3) die "python3 is missing: apt-get install python3" ;;
      *) die "$tool is missing: apt-get install util-linux" ;;
    esac
  fi
done
wg_go=$(command -v wireguard-go)

targets=(plexd-supervisor plexd-ctld plexd-netd plexd-apid plexd-cp-emulator plexdctl)
bins=(plexd-supervisor/plexd-supervisor plexd-ctld/plexd-ctld plexd-netd/plexd-netd plexd-apid/plexd-apid
      tests/emulator/plexd-cp-emulator plexdctl/plexdctl)
need_build=$force_build
for b in "${bins[@]}"; do [ -x "$build/$b" ] || need_build=1; done
if [ "$need_build" = 1 ]; then
  command -v cmake >/dev/null || die "cmake is missing: run scripts/setup.sh (build dependencies)"
  say "building in $build"
  if [ ! -f "$build/CMakeCache.txt" ]; then
    cmake -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  fi
  cmake --build "$build" -j "${PLEXD_JOBS:-$(nproc)}" --target "${targets[@]}"
fi

sup_args=(--stop-timeout-ms 5000)
[ -n "$log_level" ] && sup_args+=(--log-level "$log_level")
missing=()
for u in plexd plexd-net plexd-api; do getent passwd "$u" >/dev/null || missing+=("$u"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "quickstart: users ${missing[*]} missing (create them with: systemd-sysusers $src/systemd/plexd.sysusers);" >&2
  echo "quickstart: DEVELOPMENT FALLBACK: running the daemons as nobody" >&2
  sup_args+=(--dev-user-fallback)
fi

# --- cleanup on every way out ---------------------------------------------------
succeeded=0
interrupted=0
on_exit() {
  local rc=$?
  trap '' INT TERM
  if [ "$mode" = keep ] && [ -n "$work" ] && [ "$interrupted" = 0 ]; then
    owner_pid=""
    save_state
    if [ "$succeeded" = 1 ]; then
      say "left running; remove everything with: $0 --down"
    else
      say "left as it is for inspection (--keep); remove everything with: $0 --down"
    fi
    exit "$rc"
  fi
  if [ -n "$work" ] || [ ${#created_ns[@]} -gt 0 ] || [ ${#created_links[@]} -gt 0 ]; then
    say "tearing down"
    teardown
    if [ "$teardown_failed" = 0 ]; then
      say "torn down: no namespaces, links, processes or files of this run are left"
    else
      rc=1
    fi
  fi
  exit "$rc"
}
trap on_exit EXIT
trap 'interrupted=1; echo; say "stopping (signal)"; exit 130' INT TERM

owner_pid=$$
work=$(mktemp -d /tmp/plexd-quickstart-XXXXXX)
chmod 0755 "$work"  # the daemon users reach their config and state through it
save_state

# --- the network ------------------------------------------------------------------
#   root ns:  pxqs-r 10.211.0.254 (emulator) --veth-- hub ns: up0 on br0
#   node ns:  eth0 10.211.0.N --veth-- hub ns: pxqs-<n>-h on br0
run() { "$@" || die "failed: $*"; }
run ip netns add "$hub_ns"
created_ns+=("$hub_ns"); save_state
run ip -n "$hub_ns" link add br0 type bridge
run ip -n "$hub_ns" link set br0 up
run ip link add "$root_veth" type veth peer name up0 netns "$hub_ns"
created_links+=("$root_veth"); save_state
run ip -n "$hub_ns" link set up0 master br0 up
run ip addr add "$emu_ip/24" dev "$root_veth"
run ip link set "$root_veth" up

i=0
for n in a b c d e f g h i; do
  [ $i -lt "$nodes_wanted" ] || break
  i=$((i + 1))
  node_names+=("$n")
  node_ns[$n]=pxqs-$n
  node_ifname[$n]=pxqs-$n-wg
  node_ip[$n]=$net.$i
done
for n in "${node_names[@]}"; do
  ns=${node_ns[$n]}
  run ip netns add "$ns"
  created_ns+=("$ns"); save_state
  run ip -n "$ns" link set lo up
  run ip -n "$hub_ns" link add "pxqs-$n-h" type veth peer name eth0 netns "$ns"
  run ip -n "$hub_ns" link set "pxqs-$n-h" master br0 up
  run ip -n "$ns" addr add "${node_ip[$n]}/24" dev eth0
  run ip -n "$ns" link set eth0 up
done

# --- the control plane ----------------------------------------------------------------
json_get() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
emu_dir=$work/emulator
emu_ready=$emu_dir/ready.json
mkdir -p "$emu_dir"
spawn "$emu_bin" serve --listen "$emu_ip:0" --no-tls --tls-dir "$emu_dir/tls" --ready-file "$emu_ready" \
  --domain-cidr "$domain_cidr" --project-id "$project_id" < /dev/null > "$emu_dir/emulator.log" 2>&1
emu_pid=$!
save_state
for _ in $(seq 1 300); do
  [ -s "$emu_ready" ] && break
  alive "$emu_pid" || break
  sleep 0.1
done
if [ ! -s "$emu_ready" ]; then
  echo "quickstart: the emulator did not start within 30 s; its log:" >&2
  cat "$emu_dir/emulator.log" >&2
  exit 1
fi
emu_url=$(json_get url < "$emu_ready")
emu_admin=("$emu_bin" admin --ready-file "$emu_ready")
say "control plane (emulator): $emu_url, admin $(json_get admin_url < "$emu_ready")"

# --- the nodes ------------------------------------------------------------------
# READY=1 from each supervisor arrives on a pathname notify socket in the node's
# directory (abstract sockets belong to a network namespace; paths do not).
listen_ready() {
  python3 - "$1" "$2" > "$3" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(float(sys.argv[2]))
try:
    while True:
        msg = s.recv(4096).decode(errors="replace")
        if "READY=1" in msg.split("\n"):
            print("ready"); break
except socket.timeout:
    print("timeout")
PY
}

for n in "${node_names[@]}"; do
  d=$work/node-$n
  mkdir -p "$d"
  chmod 0755 "$d"
  token=$("${emu_admin[@]}" token create node | json_get token) || die "the emulator gave no token"
  ( umask 077; echo "$token" > "$d/bootstrap-token" )
  cat > "$d/config.yaml" <<EOF
# node $n of the quickstart mesh (network namespace ${node_ns[$n]})
data_dir: $d/data
registration:
  token_file: $d/bootstrap-token
  project_id: $project_id
  resource_handle: node-$n
api:
  base_url: $emu_url
  allow_insecure_http: true
wireguard:
  interface_name: ${node_ifname[$n]}
  listen_port: 51820
  backend: userspace
  userspace_binary: $wg_go
nat:
  enabled: false
policy:
  # No policy from the emulator yet means "allow" here, so the ping matrix
  # works out of the box; the product default is deny.
  on_null: allow
node_api:
  # One node API socket per node (plexdctl --socket $d/api.sock ...), not the
  # host's /run/plexd/api.sock, which the nodes would take from each other.
  socket_path: $d/api.sock
EOF
  chmod 0644 "$d/config.yaml"
  listen_ready "$d/notify.sock" 45 "$d/ready"
  listener_pids+=($!)
  for _ in $(seq 1 100); do [ -S "$d/notify.sock" ] && break; sleep 0.05; done
  [ -S "$d/notify.sock" ] || die "could not create the notify socket $d/notify.sock"
  NOTIFY_SOCKET=$d/notify.sock spawn ip netns exec "${node_ns[$n]}" "$sup_bin" \
    --runtime-dir "$d" --config "$d/config.yaml" "${sup_args[@]}" < /dev/null > "$d/supervisor.log" 2>&1
  sup_pid[$n]=$!
  save_state
  say "node $n: plexd-supervisor pid ${sup_pid[$n]} in namespace ${node_ns[$n]} (${node_ip[$n]}), log $d/supervisor.log"
done

log_tail() {  # the last lines of node $1's supervisor log (every daemon logs there)
  echo "--- node $1: last lines of $work/node-$1/supervisor.log" >&2
  tail -n "${2:-40}" "$work/node-$1/supervisor.log" >&2 || true
}

for idx in "${!node_names[@]}"; do
  n=${node_names[$idx]}
  d=$work/node-$n
  # The listener ends on READY=1 or after 45 s; a supervisor that exits
  # (a bad option, say) ends the wait at once.
  while alive "${listener_pids[$idx]}" && alive "${sup_pid[$n]}"; do sleep 0.1; done
  if ! alive "${listener_pids[$idx]}"; then wait "${listener_pids[$idx]}" || true; fi
  if [ "$(cat "$d/ready" 2>/dev/null)" != ready ]; then
    if alive "${sup_pid[$n]}"; then
      echo "quickstart: node $n did not report READY within 45 s" >&2
    else
      echo "quickstart: the supervisor of node $n exited before READY" >&2
    fi
    log_tail "$n" 80
    exit 1
  fi
done
listener_pids=()
say "every suite is ready; waiting for the nodes to register"

for n in "${node_names[@]}"; do
  identity=$work/node-$n/data/ctld/identity.json
  for _ in $(seq 1 300); do [ -s "$identity" ] && break; sleep 0.1; done
  if [ ! -s "$identity" ]; then
    echo "quickstart: node $n did not register within 30 s ($identity is missing)" >&2
    log_tail "$n" 80
    exit 1
  fi
  node_id[$n]=$(json_get node_id < "$identity")
  node_mesh[$n]=$(json_get mesh_ip < "$identity")
  # Where the others reach it: without NAT discovery or a relay the protocol
  # gives peers no endpoint but the control plane's fallback_endpoint
  # (PROTOCOL.md §11), so the emulated control plane hands out the node's
  # underlay address. The other nodes get it by event.
  "${emu_admin[@]}" node set "${node_id[$n]}" "{\"fallback_endpoint\":\"${node_ip[$n]}:51820\"}" > /dev/null \
    || die "the emulator refused the fallback endpoint of node $n"
  say "node $n registered: node id ${node_id[$n]}, mesh IP ${node_mesh[$n]}, endpoint ${node_ip[$n]}:51820"
done

# --- the mesh ------------------------------------------------------------------
in_ns() { local n=$1; shift; ip netns exec "${node_ns[$n]}" "$@"; }
wg_dump() { in_ns "$1" wg show "${node_ifname[$1]}" dump 2>/dev/null | tail -n +2; }
# Field $3 (5 = latest handshake, 6 = rx, 7 = tx, 3 = endpoint) of node $1's peer with key $2.
peer_field() { awk -v k="$2" -v f="$3" '$1 == k { print $f; found = 1 } END { if (!found) print "" }' <<< "$1"; }

diagnose() {
  local n
  for n in "${node_names[@]}"; do
    echo "=== node $n: namespace ${node_ns[$n]}, interface ${node_ifname[$n]}, mesh IP ${node_mesh[$n]:-?}" >&2
    in_ns "$n" wg show "${node_ifname[$n]}" >&2 2>&1 || echo "(no WireGuard interface ${node_ifname[$n]})" >&2
    in_ns "$n" ip -4 addr show "${node_ifname[$n]}" >&2 2>&1 || true
    log_tail "$n" 40
  done
  echo "--- emulator: last lines of $emu_dir/emulator.log" >&2
  tail -n 20 "$emu_dir/emulator.log" >&2 || true
}

say "waiting (up to $timeout_s s) until every node has a handshake with every other node"
started=$SECONDS
deadline=$((started + timeout_s))
while :; do
  for n in "${node_names[@]}"; do
    [ -n "${node_key[$n]:-}" ] || node_key[$n]=$(in_ns "$n" wg show "${node_ifname[$n]}" public-key 2>/dev/null || true)
  done
  complete=1
  pings=()
  for a in "${node_names[@]}"; do
    dump=$(wg_dump "$a")
    for b in "${node_names[@]}"; do
      [ "$a" != "$b" ] || continue
      key=${node_key[$b]:-}
      hs=""
      [ -n "$key" ] && hs=$(peer_field "$dump" "$key" 5)
      if [ -z "$hs" ]; then
        complete=0
      elif [ "$hs" = 0 ]; then
        # A handshake needs traffic: a ping starts one (keepalive would take 25 s).
        complete=0
        in_ns "$a" ping -n -q -c 1 -W 1 "${node_mesh[$b]}" >/dev/null 2>&1 &
        pings+=($!)
      fi
    done
  done
  [ ${#pings[@]} -eq 0 ] || wait "${pings[@]}" 2>/dev/null || true
  [ "$complete" = 1 ] && break
  for n in "${node_names[@]}"; do
    alive "${sup_pid[$n]}" || { echo "quickstart: the supervisor of node $n exited" >&2; log_tail "$n" 80; exit 1; }
  done
  if [ $SECONDS -ge $deadline ]; then
    echo "quickstart: no full mesh within $timeout_s s (every node needs a handshake with every other node)" >&2
    diagnose
    exit 1
  fi
  sleep 0.5
done
say "full mesh after $((SECONDS - started)) s: every node has a handshake with every other node"

# Every pair, over the mesh IPs.
declare -A rtt=()
ping_failed=0
for a in "${node_names[@]}"; do
  for b in "${node_names[@]}"; do
    [ "$a" != "$b" ] || continue
    out=$(in_ns "$a" ping -n -q -c 3 -i 0.2 -W 1 "${node_mesh[$b]}" 2>&1) && ok=1 || ok=0
    if [ "$ok" = 1 ]; then
      rtt[$a$b]=$(sed -n 's|^rtt [^=]*= [0-9.]*/\([0-9.]*\)/.*|\1 ms|p' <<< "$out")
      [ -n "${rtt[$a$b]}" ] || rtt[$a$b]=ok
    else
      rtt[$a$b]=FAIL
      ping_failed=1
    fi
  done
done
echo
printf '%-18s' "ping (avg of 3)"
for b in "${node_names[@]}"; do printf '%-12s' "to $b"; done
echo
for a in "${node_names[@]}"; do
  printf '%-18s' "from $a"
  for b in "${node_names[@]}"; do
    if [ "$a" = "$b" ]; then printf '%-12s' "-"; else printf '%-12s' "${rtt[$a$b]}"; fi
  done
  echo
done
if [ $ping_failed = 1 ]; then
  echo "quickstart: some pings over the mesh were not answered" >&2
  diagnose
  exit 1
fi

# --- the status table ---------------------------------------------------------------
human_bytes() {
  local b=${1:-0}
  if [ "$b" -lt 1024 ]; then echo "$b B"
  elif [ "$b" -lt 1048576 ]; then awk -v b="$b" 'BEGIN { printf "%.1f KiB", b / 1024 }'
  else awk -v b="$b" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; fi
}
suite_state() {  # "3/3 ready" from the supervisor's status
  "$sup_bin" status --json --runtime-dir "$work/node-$1" 2>/dev/null | python3 -c '
import json, sys
c = json.load(sys.stdin)["children"]
print("%d/%d ready" % (sum(1 for x in c if x["ready"]), len(c)))' 2>/dev/null || echo "?"
}
echo
fmt='%-5s %-14s %-10s %-5s %-14s %-18s %-10s %-10s %-10s\n'
# shellcheck disable=SC2059
printf "$fmt" NODE "MESH IP" DAEMONS PEER "PEER MESH IP" ENDPOINT HANDSHAKE RX TX
now=$(date +%s)
for a in "${node_names[@]}"; do
  dump=$(wg_dump "$a")
  first=1
  daemons=$(suite_state "$a")
  for b in "${node_names[@]}"; do
    [ "$a" != "$b" ] || continue
    key=${node_key[$b]}
    hs=$(peer_field "$dump" "$key" 5)
    if [ -z "$hs" ]; then ago="no peer"; elif [ "$hs" = 0 ]; then ago=never; else ago="$((now - hs)) s ago"; fi
    if [ $first = 1 ]; then
      # shellcheck disable=SC2059
      printf "$fmt" "$a" "${node_mesh[$a]}" "$daemons" "$b" "${node_mesh[$b]}" "$(peer_field "$dump" "$key" 3)" "$ago" \
        "$(human_bytes "$(peer_field "$dump" "$key" 6)")" "$(human_bytes "$(peer_field "$dump" "$key" 7)")"
    else
      # shellcheck disable=SC2059
      printf "$fmt" "" "" "" "$b" "${node_mesh[$b]}" "$(peer_field "$dump" "$key" 3)" "$ago" \
        "$(human_bytes "$(peer_field "$dump" "$key" 6)")" "$(human_bytes "$(peer_field "$dump" "$key" 7)")"
    fi
    first=0
  done
done

a=${node_names[0]}; b=${node_names[1]}; last=${node_names[${#node_names[@]} - 1]}
# Paths as the user can type them: relative when run from the source tree.
rel() { case $1 in "$PWD"/*) echo "${1#"$PWD"/}" ;; *) echo "$1" ;; esac; }
hint() { printf '  %-30s %s\n' "$1" "$2"; }
E="$(rel "$emu_bin") admin --ready-file $emu_ready"
echo
echo "Explore (as root; node $a is network namespace ${node_ns[$a]}, and so on):"
hint "a shell in node $a" "ip netns exec ${node_ns[$a]} bash"
hint "its WireGuard" "ip netns exec ${node_ns[$a]} wg show ${node_ifname[$a]}"
hint "ping over the mesh" "ip netns exec ${node_ns[$a]} ping ${node_mesh[$b]}"
hint "its suite and ctld's state" "$(rel "$ctl_bin") suite --control-socket $work/node-$a/supervisor.sock"
hint "its node API (status, peers)" "$(rel "$ctl_bin") --socket $work/node-$a/api.sock status"
hint "its daemons' log" "tail -f $work/node-$a/supervisor.log"
hint "the control plane (emulator)" "E=\"$E\""
hint "" "\$E status; \$E node list; \$E events"
hint "what node $a pulls" "\$E snapshot ${node_id[$a]}"
hint "a control-plane outage" "\$E offline; sleep 30; \$E online"
hint "a policy: only ping from $a to $b" "\$E policy ${node_id[$b]} '{\"rules\":[{\"action\":\"allow\",\"protocol\":\"icmp\",\"source_cidr\":\"${node_mesh[$a]}/32\",\"destination_cidr\":\"${node_mesh[$b]}/32\"}]}'"
hint "node $b's firewall" "ip netns exec ${node_ns[$b]} nft list table inet plexd"
hint "take node $last out of the mesh" "\$E node delete ${node_id[$last]}"
hint "every admin command" "docs/emulator.md; $(rel "$emu_bin") --help"
succeeded=1
case $mode in
  check)
    echo
    say "check passed"
    exit 0
    ;;
  keep)
    exit 0
    ;;
esac
echo
say "running; Ctrl-C (or $0 --down from another shell) stops the mesh and removes everything"
while :; do
  for n in "${node_names[@]}"; do
    if ! alive "${sup_pid[$n]}"; then
      echo "quickstart: the supervisor of node $n exited" >&2
      log_tail "$n" 40
      exit 1
    fi
  done
  sleep 2 &
  wait $! || true
done
