#!/usr/bin/env bash
# Build the Debian 12 (bookworm) systemd base image for Molecule locally.
#
# No registry is reachable, so the image is made with debootstrap from the
# Debian mirror and loaded with `docker import`. The tag is a hash of this
# script, so editing the recipe gives a new tag; the rootfs tarball is kept
# in .cache/images/ so a rebuild after `docker system prune` skips debootstrap.
# The image must be bookworm (systemd 252): the hosts are cgroup v1 (hybrid),
# which newer systemd no longer boots on.
# Last line of output: the image reference.
set -euo pipefail

script_path="$(readlink -f "${BASH_SOURCE[0]}")"
script_dir="$(dirname "${script_path}")"
repo_root="$(dirname "${script_dir}")"
cache_dir="${repo_root}/.cache"
images_dir="${cache_dir}/images"

image="kcs/debian12-systemd"
recipe_hash="$(sha256sum "${script_path}" | cut -c1-12)"
ref="${image}:${recipe_hash}"
tarball="${images_dir}/debian12-systemd-${recipe_hash}.tar.gz"
suite="bookworm"
packages="systemd,systemd-sysv,python3,sudo,iproute2,procps,ca-certificates"

log() { printf 'build-base-image: %s\n' "$*" >&2; }

# The daemon (and debootstrap) must be there first. Called before the lock
# fd below is opened so a freshly started dockerd can never inherit it.
"${script_dir}/ensure-docker.sh"

tag_latest() { docker tag "${ref}" "${image}:latest"; }

# Fast path: this recipe's image is already loaded.
if docker image inspect "${ref}" >/dev/null 2>&1; then
  tag_latest
  echo "cached: ${ref} already present"
  echo "${ref}"
  exit 0
fi

mkdir -p "${images_dir}"
# Serialise parallel builds (e.g. several scenarios at once) on one lock.
exec 9>"${images_dir}/.lock"
flock 9
if docker image inspect "${ref}" >/dev/null 2>&1; then
  tag_latest
  echo "cached: ${ref} built by a parallel run"
  echo "${ref}"
  exit 0
fi

# Use the mirror host the machine already uses (the only one reachable),
# over plain http so the minimal rootfs needs no TLS setup for apt.
# DEBIAN_MIRROR / DEBIAN_SECURITY_MIRROR override.
host_uris() {
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
    /etc/apt/sources.list.d/*.sources 2>/dev/null |
    grep -v '^[[:space:]]*#' |
    grep -oE 'https?://[^[:space:]]+' |
    sed -e 's#^https://#http://#' -e 's#/*$##' || true
}
mirror="${DEBIAN_MIRROR:-$(host_uris | grep -E '/debian$' | head -n1 || true)}"
mirror="${mirror:-http://deb.debian.org/debian}"
security_mirror="${DEBIAN_SECURITY_MIRROR:-$(host_uris | grep -E '/debian-security$' | head -n1 || true)}"
security_mirror="${security_mirror:-${mirror}-security}"

if [[ ! -s "${tarball}" ]]; then
  if [[ ${EUID} -ne 0 ]]; then
    log "debootstrap needs root; run this script as root"
    exit 1
  fi
  # ensure-docker.sh installs it too, but skips that when dockerd already runs.
  if ! command -v debootstrap >/dev/null 2>&1; then
    apt-get -o DPkg::Lock::Timeout=600 update </dev/null
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 \
      install -y debootstrap </dev/null
  fi
  # Work dir on the repo's disk: /tmp may be a noexec tmpfs, which breaks
  # debootstrap's chroot stage and is too small anyway.
  work="$(mktemp -d "${cache_dir}/rootfs.XXXXXX")"
  rootfs="${work}/rootfs"
  cleanup() {
    # debootstrap mounts proc/sys inside the target; unmount before rm so
    # rm never walks into the host's /proc or /sys.
    if [[ -d "${rootfs}" ]]; then
      { findmnt -rno TARGET | grep -F "${rootfs}/" || true; } | sort -r |
        while read -r m; do umount -l "${m}" || true; done
    fi
    rm -rf --one-file-system "${work}"
  }
  trap cleanup EXIT

  log "debootstrap ${suite} from ${mirror} (this takes a few minutes)"
  debootstrap --variant=minbase --include="${packages}" \
    "${suite}" "${rootfs}" "${mirror}" >"${work}/debootstrap.log" 2>&1 || {
    tail -n 40 "${work}/debootstrap.log" >&2
    exit 1
  }

  # apt sources in the same deb822 style as the host.
  rm -f "${rootfs}/etc/apt/sources.list"
  cat >"${rootfs}/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: ${mirror}
Suites: ${suite} ${suite}-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${security_mirror}
Suites: ${suite}-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF

  # Empty machine-id: systemd generates a fresh one per container boot
  # instead of every container sharing the build's id.
  : >"${rootfs}/etc/machine-id"
  rm -f "${rootfs}/var/lib/dbus/machine-id"
  # Docker provides these per container.
  : >"${rootfs}/etc/hostname"
  rm -f "${rootfs}/etc/resolv.conf"

  # systemd 252 already skips udev/kernel/tty units in a container (boot
  # reaches "running" without masks). Masked anyway because they only get
  # in the way of tests: a console login prompt (console-getty grabs the tty
  # under `docker run -t`), apt timers that take the dpkg lock while Ansible
  # runs apt, and an ext4 scrub timer for the host's disk.
  for unit in getty.target console-getty.service \
    apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer; do
    ln -sf /dev/null "${rootfs}/etc/systemd/system/${unit}"
  done

  # Save space: lists are refetched by `apt-get update` anyway.
  rm -rf "${rootfs}"/var/lib/apt/lists/* "${rootfs}"/var/cache/apt/*.bin \
    "${rootfs}"/var/cache/apt/archives/*.deb "${rootfs}"/var/log/*.log
  mkdir -p "${rootfs}/var/lib/apt/lists/partial"

  # Docker mounts its own /dev, /proc, /sys, /run: keep them empty.
  log "packing rootfs into ${tarball}"
  tar --numeric-owner --xattrs --acls -C "${rootfs}" \
    --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
    --exclude='./run/*' --exclude='./tmp/*' \
    -czf "${tarball}.part" .
  mv -f "${tarball}.part" "${tarball}"
  # Drop tarballs of older recipes so the cache does not grow without bound.
  find "${images_dir}" -maxdepth 1 -name 'debian12-systemd-*.tar.gz' \
    ! -name "${tarball##*/}" -delete
  cleanup
  trap - EXIT
else
  log "reusing cached rootfs ${tarball}"
fi

log "importing ${ref}"
rootfs_ref="${ref}-rootfs"
docker import \
  --change 'CMD ["/lib/systemd/systemd"]' \
  --change 'ENV container=docker' \
  --message "debootstrap ${suite} minbase + ${packages}" \
  "${tarball}" "${rootfs_ref}" >/dev/null
# dockerd 20.10 (Debian's docker.io) rejects STOPSIGNAL in `import --change`,
# so add it with a one-line build on top of the imported image. Legacy
# builder: no buildx plugin here, and FROM a local image needs no registry.
# SIGRTMIN+3 makes systemd shut down cleanly on `docker stop`.
# Output only shown on failure: the legacy builder always prints a
# deprecation notice.
if ! build_out="$(printf 'FROM %s\nSTOPSIGNAL SIGRTMIN+3\nLABEL org.kcs.recipe-hash=%s\n' \
  "${rootfs_ref}" "${recipe_hash}" |
  DOCKER_BUILDKIT=0 docker build -q -t "${ref}" - 2>&1)"; then
  printf '%s\n' "${build_out}" >&2
  exit 1
fi
docker rmi "${rootfs_ref}" >/dev/null
tag_latest
echo "${ref}"
