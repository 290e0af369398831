#!/usr/bin/env bash
# Makes the base image deploy/Dockerfile's FROM names (node:<major>-<suite>-slim)
# without a registry, since none can be pulled on these machines:
#   1. a minbase Debian root of the Dockerfile's suite by debootstrap, cached as a tarball;
#   2. this Node's binary, headers and npm under /usr/local, where the node images
#      keep them, plus this machine's CA bundle and an npmrc naming it (npm and
#      Debian are reached through it here, as a real base carries the public CAs);
#   3. `podman import` under the FROM name, skipped when that tag already carries this Node.
# Also writes a private podman configuration (nothing in /var/lib/containers or
# /etc/cni/net.d) and $CACHE/env, which callers source (or read) to use it.
# Prints on stdout, as name=value lines: node_major (the Dockerfile's
# NODE_VERSION build-arg), base (the tag made) and env (the file above).
# Idempotent; image layers stay in $CACHE/podman between runs on one machine.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=/var/cache/miniflannel-image
RUNROOT=/run/miniflannel-image
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
mkdir -p "$CACHE" "$RUNROOT"
# CI and the test may both call this: one at a time.
exec 9>"$CACHE/lock"
flock 9

# Podman 4.3 here: crun fails (hybrid cgroups, setrlimit) and runc fails on the
# default ulimits, so runc without them; no systemd as PID 1, so cgroupfs and a file
# for events; CNI's files in a directory of ours, not the node's /etc/cni/net.d.
cat >"$CACHE/containers.conf" <<CONF
[containers]
default_ulimits = []

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$RUNROOT/events.log"
tmp_dir = "$RUNROOT/libpod-tmp"

[network]
network_config_dir = "$RUNROOT/cni"
CONF
cat >"$CACHE/storage.conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$CACHE/podman"
runroot = "$RUNROOT/storage"
CONF
printf 'export CONTAINERS_CONF=%s\nexport CONTAINERS_STORAGE_CONF=%s\n' \
  "$CACHE/containers.conf" "$CACHE/storage.conf" >"$CACHE/env"
source "$CACHE/env"

# `FROM node:${NODE_VERSION}-trixie-slim AS build` -> node, trixie.
from=$(awk 'toupper($1) == "FROM" { print $2; exit }' deploy/Dockerfile)
[[ $from =~ ^([a-z0-9./-]+):\$\{NODE_VERSION\}-([a-z]+)-slim$ ]] ||
  { echo "image-base.sh: deploy/Dockerfile's FROM $from is not <name>:\${NODE_VERSION}-<suite>-slim" >&2; exit 1; }
name=${BASH_REMATCH[1]}
suite=${BASH_REMATCH[2]}
[[ $name == */* ]] || name=docker.io/library/$name
node_bin=$(node -p process.execPath)
node_prefix=$(dirname "$(dirname "$node_bin")")
node_version=$(node -p process.versions.node)
major=${node_version%%.*}
tag=$name:$major-$suite-slim

made() { printf 'node_major=%s\nbase=%s\nenv=%s\n' "$major" "$tag" "$CACHE/env"; }
if podman image inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$tag" 2>/dev/null |
   grep -qx "NODE_VERSION=$node_version"; then
  made
  exit 0
fi

# What the official debian:*-slim images (debuerreotype) set up, so that the
# Dockerfile's apt-get layers are as small here as on a real base: without it
# the iptables layer carries apt's 78 MB package caches.
slimify() {
  local root=$1
  printf '%s\n' 'Dir::Cache::pkgcache "";' 'Dir::Cache::srcpkgcache "";' >"$root"/etc/apt/apt.conf.d/docker-clean
  echo 'Acquire::Languages "none";' >"$root"/etc/apt/apt.conf.d/docker-no-languages
  echo 'Acquire::GzipIndexes "true";' >"$root"/etc/apt/apt.conf.d/docker-gzip-indexes
  echo 'Apt::AutoRemove::SuggestsImportant "false";' >"$root"/etc/apt/apt.conf.d/docker-autoremove-suggests
  echo 'force-unsafe-io' >"$root"/etc/dpkg/dpkg.cfg.d/docker-apt-speedup
  printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
    'path-exclude /usr/share/man/*' 'path-exclude /usr/share/info/*' 'path-exclude /usr/share/groff/*' \
    'path-exclude /usr/share/lintian/*' 'path-exclude /usr/share/locale/*' >"$root"/etc/dpkg/dpkg.cfg.d/docker
  find "$root"/usr/share/doc -mindepth 1 -not -name copyright -not -type d -delete
  find "$root"/usr/share/doc -mindepth 1 -type d -empty -delete
  rm -rf "$root"/usr/share/{man,info,groff,lintian,locale}/*
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/*
}

rootfs_tar=$CACHE/debian-$suite-minbase-slim.tar
work=$(mktemp -d -p "$CACHE" base.XXXX)
trap 'rm -rf "$work"' EXIT
if [ ! -f "$rootfs_tar" ]; then
  debootstrap --variant=minbase "$suite" "$work/root" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 ||
    { tail -20 "$CACHE/debootstrap.log" >&2; exit 1; }
  slimify "$work/root"
  tar -C "$work/root" --numeric-owner -cf "$rootfs_tar.tmp" .
  mv "$rootfs_tar.tmp" "$rootfs_tar"
  rm -rf "$work/root"
fi

extra=$work/node
mkdir -p "$extra"/usr/local/{bin,include,lib/node_modules,etc} "$extra"/etc/ssl/certs
chmod 755 "$extra"
install -m 755 "$node_bin" "$extra"/usr/local/bin/node
cp -a "$node_prefix"/include/node "$extra"/usr/local/include/
cp -a "$(npm root -g)"/npm "$extra"/usr/local/lib/node_modules/
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$extra"/usr/local/bin/npm
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$extra"/usr/local/bin/npx
# The bundle npm trusts here, else Debian's: the base's CAs, as a real one carries the public CAs.
npm_cafile=$(npm config get cafile)
cafile=$npm_cafile
[ -f "$cafile" ] || cafile=/etc/ssl/certs/ca-certificates.crt
[ -f "$cafile" ] || { echo "image-base.sh: no CA bundle: npm's cafile ($npm_cafile) and $cafile are not files" >&2; exit 1; }
cp "$cafile" "$extra"/etc/ssl/certs/ca-certificates.crt
# npm's global config for prefix /usr/local.
printf 'cafile=/etc/ssl/certs/ca-certificates.crt\n' >"$extra"/usr/local/etc/npmrc
cp "$rootfs_tar" "$work/image.tar"
# Only paths the Debian root lacks: podman import refuses a tar with duplicate paths.
tar -C "$extra" --numeric-owner --owner=0 --group=0 -rf "$work/image.tar" \
  ./usr/local/bin/node ./usr/local/bin/npm ./usr/local/bin/npx ./usr/local/include/node \
  ./usr/local/lib/node_modules ./usr/local/etc/npmrc ./etc/ssl
podman import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change "ENV NODE_VERSION=$node_version" \
  --change 'CMD ["node"]' \
  "$work/image.tar" "$tag" >&2
made
