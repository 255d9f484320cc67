#!/usr/bin/env bash
# Make sure a working Docker daemon is available on this machine.
#
# Idempotent: exits at once when `docker info` already works. Otherwise it
# installs docker.io (plus debootstrap, which build-base-image.sh needs) and
# starts dockerd detached from the calling shell, because the sandbox/CI
# machines have no systemd as PID 1 to start docker.service for us.
# Safe to run with no stdin and no TTY (CI).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache_dir="${repo_root}/.cache"
log_file="${cache_dir}/dockerd.log"
wait_secs="${DOCKERD_WAIT_SECS:-60}"

log() { printf 'ensure-docker: %s\n' "$*" >&2; }

docker_ok() { docker info >/dev/null 2>&1; }

# Fast path: nothing to do.
if docker_ok; then
  exit 0
fi

# Everything below needs root (package install, dockerd). Use non-interactive
# sudo when not root so CI without a TTY fails fast instead of prompting.
SUDO=()
if [[ ${EUID} -ne 0 ]]; then
  SUDO=(sudo -n)
fi

if ! command -v dockerd >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1; then
  log "installing docker.io and debootstrap"
  # Lock timeout: wait for a concurrent apt/dpkg run instead of failing.
  "${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=600 update </dev/null
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get -o DPkg::Lock::Timeout=600 install -y \
    docker.io debootstrap </dev/null
fi

# The CLI may be missing if only dockerd was found elsewhere; it is needed for
# every check below.
if ! command -v docker >/dev/null 2>&1; then
  log "docker CLI not found after install"
  exit 1
fi

mkdir -p "${cache_dir}"

if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
  # A real systemd host: let the packaged unit own the daemon.
  log "starting docker.service via systemd"
  "${SUDO[@]}" systemctl start docker.service </dev/null || true
elif pgrep -x dockerd >/dev/null 2>&1; then
  # A dockerd is already starting (e.g. a parallel call): just wait for it.
  log "dockerd already running (pid $(pgrep -x dockerd | head -n1)), waiting for it"
else
  log "starting dockerd, log: ${log_file}"
  # setsid + nohup + </dev/null: the daemon must outlive this shell and the CI
  # step and must not hold on to the caller's terminal or pipes.
  # No storage-driver flag: dockerd picks overlay2 when the kernel/backing fs
  # support it and falls back (fuse-overlayfs/vfs) by itself otherwise.
  # Default iptables/bridge handling is kept: user-defined networks need the
  # embedded DNS and the host must route to container IPs.
  # Extra inherited fds (CI pipes, callers' lock files) are closed too, or
  # the long-lived daemon would keep them open after this script exits.
  (
    for fd in /proc/self/fd/*; do
      fd="${fd##*/}"
      if ((fd > 2)); then eval "exec ${fd}>&-"; fi
    done
    # shellcheck disable=SC2024  # the log file is ours, not root-only
    exec "${SUDO[@]}" setsid nohup dockerd >>"${log_file}" 2>&1 </dev/null
  ) &
  disown || true
fi

deadline=$((SECONDS + wait_secs))
while ((SECONDS < deadline)); do
  if docker_ok; then
    log "docker is up"
    exit 0
  fi
  sleep 0.5
done

log "docker did not come up within ${wait_secs}s; last daemon log lines:"
tail -n 30 "${log_file}" >&2 2>/dev/null || true
exit 1
