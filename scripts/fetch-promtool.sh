#!/usr/bin/env bash
# promtool and amtool for the controller, taken from Debian 12's prometheus and prometheus-alertmanager packages
# (apt verifies them against the archive's signed index). Unit tests use them to check and test the alert rules
# and the Alertmanager config without a monitoring host. Output: .cache/bin/{promtool,amtool}.
set -euo pipefail

ROOT="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)"
BIN="$ROOT/.cache/bin"

if [[ -x "$BIN/promtool" && -x "$BIN/amtool" ]]; then
    echo "cached"
    exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$BIN"
chmod 0755 "$work"  # apt downloads as the _apt user
cd "$work"
# apt-get download needs a current package index; refresh it only when it does not know the package.
if ! apt-cache show prometheus >/dev/null 2>&1; then
    apt-get update -qq
fi
apt-get download -qq prometheus prometheus-alertmanager
for deb in ./*.deb; do
    dpkg-deb -x "$deb" "$work/root"
done
install -m 0755 "$work/root/usr/bin/promtool" "$BIN/promtool"
install -m 0755 "$work/root/usr/bin/amtool" "$BIN/amtool"
"$BIN/promtool" --version | head -1
"$BIN/amtool" --version 2>&1 | head -1
