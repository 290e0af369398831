#!/usr/bin/env bash
# The two commands of the README, each doing all of its own setup on a
# fresh Debian machine (as root):
#   ./dev.sh sandbox   run a local three-node cluster in network namespaces
#   ./dev.sh test      run the test suite
#   ./dev.sh bench     pod-to-pod throughput, miniflannel vs kernel VXLAN
set -euo pipefail
cd "$(dirname "$0")"

# Debian packages the tests, the sandbox and the benchmark use, by the file each provides.
declare -A PACKAGES=(
  [/usr/bin/redis-server]=redis-server
  [/usr/bin/redis-sentinel]=redis-sentinel
  [/usr/bin/openssl]=openssl
  [/usr/sbin/ip]=iproute2
  [/usr/sbin/bridge]=iproute2
  [/usr/bin/iperf3]=iperf3
  [/usr/lib/cni/bridge]=containernetworking-plugins
  [/usr/sbin/iptables]=iptables
  [/usr/bin/ping]=iputils-ping
  [/usr/bin/setpriv]=util-linux
  [/usr/bin/make]=make
  [/usr/bin/cc]=gcc
  [/usr/bin/g++]=g++
  [/usr/bin/python3]=python3
  [/usr/bin/curl]=curl
  [/usr/bin/tcpdump]=tcpdump
  [/usr/sbin/openvpn]=openvpn
  [/usr/bin/zsh]=zsh
  [/usr/bin/prometheus]=prometheus
  [/usr/bin/promtool]=prometheus
  [/usr/bin/podman]=podman
  [/usr/bin/buildah]=buildah
  [/usr/sbin/runc]=runc
  [/usr/sbin/debootstrap]=debootstrap
)

die() { echo "dev.sh: $*" >&2; exit 1; }

ensure_packages() {
  local missing=()
  for file in "${!PACKAGES[@]}"; do
    [ -e "$file" ] || missing+=("${PACKAGES[$file]}")
  done
  command -v node >/dev/null || die "Node.js 20 or newer is needed (https://nodejs.org, or Debian's nodejs package)"
  [ ${#missing[@]} -eq 0 ] && return
  echo "dev.sh: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends $(printf '%s\n' "${missing[@]}" | sort -u)
}

ensure_node_modules() {
  # npm ci builds the native TUN binding too; rerun it whenever the lock file changed.
  if [ ! -f build/Release/miniflannel_native.node ] || [ ! -f node_modules/.package-lock.json ] ||
     [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund
  elif [ -n "$(find native binding.gyp -newer build/Release/miniflannel_native.node)" ]; then
    npm run install   # the native sources changed since the last build (a pull, say)
  fi
}

[ "$(id -u)" -eq 0 ] || die "run as root (sudo ./dev.sh $*): namespaces, TUN devices and apt-get need it"
command="${1:-}"
[ $# -gt 0 ] && shift
case "$command" in
  test)    ensure_packages; ensure_node_modules; npm test ;;
  sandbox) ensure_packages; ensure_node_modules; npm run --silent sandbox -- "$@" ;;
  bench)   ensure_packages; ensure_node_modules; npm run --silent bench -- "$@" ;;
  *) die "usage: ./dev.sh test | sandbox | bench" ;;
esac
