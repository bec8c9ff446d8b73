#!/usr/bin/env bash
# Installs every build and test dependency of plexd from Debian 12's archive
# and creates the service users. Idempotent: safe to run again; does nothing
# that is already done. Needs root (or sudo).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

packages=(
  # build
  build-essential cmake ninja-build pkg-config git
  clang libclang-rt-14-dev
  libcurl4-openssl-dev libssl-dev zlib1g-dev rapidjson-dev libfmt-dev libyaml-cpp-dev
  libnl-3-dev libnl-genl-3-dev libnl-route-3-dev libnftnl-dev libmnl-dev
  libsystemd-dev libmicrohttpd-dev libcap-dev libseccomp-dev
  catch2
  # tests: real parts
  systemd iproute2 nftables wireguard-tools wireguard-go curl procps psmisc
  iputils-ping python3 coturn conntrack tcpdump
  # benchmarks
  iperf3
)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all packages present"
fi

# The contract test (tests/contract/, docs/emulator.md "Contract test") runs
# prism (@stoplight/prism-cli, an OpenAPI validating proxy) on node. Debian's
# nodejs + npm unless a node and npm are already installed (a NodeSource node
# conflicts with Debian's npm package and ships its own npm).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "setup: installing nodejs npm"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends nodejs npm
fi
# prism itself, at a fixed prefix, exactly as tests/contract/prism/package-lock.json
# pins it (every dependency runs on Debian 12's node 18). Reinstalled only when
# the lock changes; the stamp is written last, so a failed install is retried.
prism_dir=${PLEXD_PRISM_DIR:-/opt/plexd-test/prism}
prism_src=$here/tests/contract/prism
if [ -x "$prism_dir/node_modules/.bin/prism" ] && cmp -s "$prism_src/package-lock.json" "$prism_dir/installed.lock"; then
  echo "setup: prism present in $prism_dir"
else
  echo "setup: installing prism into $prism_dir"
  $SUDO rm -f "$prism_dir/installed.lock"  # npm ci replaces node_modules itself
  $SUDO mkdir -p "$prism_dir"
  $SUDO cp "$prism_src/package.json" "$prism_src/package-lock.json" "$prism_dir/"
  (cd "$prism_dir" && $SUDO npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error)
  $SUDO cp "$prism_src/package-lock.json" "$prism_dir/installed.lock"
fi

# Service users (one per daemon). The same file ships as sysusers.d config.
if [ -f "$here/systemd/plexd.sysusers" ]; then
  if command -v systemd-sysusers >/dev/null; then
    $SUDO systemd-sysusers "$here/systemd/plexd.sysusers"
  fi
fi
