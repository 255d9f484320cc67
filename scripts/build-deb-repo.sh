#!/usr/bin/env bash
# Build a local APT repository of every Debian package the roles install on a node, once per machine.
#
# The list is read from the roles' defaults (every `*_packages` list), so a package a role starts to need is picked
# up without editing this script. The packages and their dependencies are resolved and downloaded inside a throwaway
# container of the Molecule base image, so the closure is exactly what a fresh node lacks. The result is a flat
# repository (`Packages.gz` beside the .deb files) in $KCS_DEB_REPO (default ~/.cache/kcs-debs: outside the clone,
# so it is built once per machine, not once per checkout):
#   - Molecule mounts it read-only into every container at /srv/debs and makes it the nodes' only APT source
#     (molecule/shared/prepare.yml), so the scenarios download nothing and prove the list is complete;
#   - an operator without internet access copies the folder to a web server or a disk their nodes see and points
#     APT at it: `deb [trusted=yes] http://mirror.example/debs ./` (docs/air-gapped.md).
# Rebuilt only when the package list or the base image changes. Last line of output: the repository's directory.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${KCS_DEB_REPO:-${HOME}/.cache/kcs-debs}"
image="${KCS_BASE_IMAGE:-kcs/debian12-systemd:latest}"
python="${PYTHON:-${repo_root}/.venv/bin/python}"

log() { printf 'build-deb-repo: %s\n' "$*" >&2; }

# Every list-valued `<role>_packages` default, deduplicated and sorted.
mapfile -t packages < <("${python}" - "${repo_root}/roles" <<'PY'
import pathlib, sys, yaml
found = set()
for defaults in sorted(pathlib.Path(sys.argv[1]).glob("*/defaults/main.yml")):
    for name, value in (yaml.safe_load(defaults.read_text()) or {}).items():
        if name.endswith("_packages") and isinstance(value, list):
            found.update(str(item) for item in value)
print("\n".join(sorted(found)))
PY
)
((${#packages[@]})) || { log "no *_packages found in the roles' defaults"; exit 1; }

image_id="$(docker image inspect --format '{{.Id}}' "${image}")"
stamp="$(printf '%s\n' "${image_id}" "${packages[@]}" | sha256sum | cut -c1-16)"
if [[ -f "${out}/.stamp" && "$(cat "${out}/.stamp")" == "${stamp}" && -s "${out}/Packages.gz" ]]; then
  echo "cached: ${#packages[@]} packages (${packages[*]})"
  echo "${out}"
  exit 0
fi

log "resolving and downloading ${packages[*]} in a ${image} container"
work="${out}.part"
rm -rf "${work}" && mkdir -p "${work}"
# Recommends are downloaded too (APT's default): a role that does not turn them off installs them.
docker run --rm -v "${work}:/out" -e DEBIAN_FRONTEND=noninteractive "${image}" bash -euo pipefail -c '
  apt-get -q update >/dev/null
  apt-get -q install -y --no-install-recommends apt-utils >/dev/null
  apt-get -q install -y --download-only -o Dir::Cache::archives=/out/ -o Debug::NoLocking=1 "$@" >/dev/null
  rm -rf /out/partial /out/lock
  cd /out && apt-ftparchive packages . | gzip -9n > Packages.gz
  chown -R '"$(id -u):$(id -g)"' /out
' _ "${packages[@]}"
echo "${stamp}" >"${work}/.stamp"
rm -rf "${out}" && mv "${work}" "${out}"
log "$(find "${out}" -name '*.deb' | wc -l) packages, $(du -sh "${out}" | cut -f1)"
echo "${out}"
