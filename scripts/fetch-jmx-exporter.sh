#!/usr/bin/env bash
# Fetch the Prometheus JMX exporter java agent from Maven Central into
# .cache/artifacts/, verified against the .sha1 Central publishes beside it.
#
#   scripts/fetch-jmx-exporter.sh [VERSION]      (default 1.0.1)
#
# Env: MAVEN_REPO_URL  Maven repository base (default Maven Central), for mirrors.
set -euo pipefail

VERSION="${1:-1.0.1}"
REPO_URL="${MAVEN_REPO_URL:-https://repo1.maven.org/maven2}"
ROOT="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)"
ARTIFACTS="$ROOT/.cache/artifacts"
JAR="jmx_prometheus_javaagent-${VERSION}.jar"
OUT="$ARTIFACTS/$JAR"
URL="$REPO_URL/io/prometheus/jmx/jmx_prometheus_javaagent/$VERSION/$JAR"

mkdir -p "$ARTIFACTS"

# Cached only if the jar still matches the checksum we verified at download time.
if [[ -f "$OUT" && -f "$OUT.sha1" ]] \
    && [[ "$(sha1sum "$OUT" | cut -d' ' -f1)" == "$(cat "$OUT.sha1")" ]]; then
    echo "cached"
    echo "$OUT"
    exit 0
fi

tmp="$(mktemp "$ARTIFACTS/.$JAR.XXXXXX")"
trap 'rm -f "$tmp"' EXIT

# Central's .sha1 files are bare hex (sometimes followed by a file name): keep field 1.
if ! expected="$(curl -fsSL --retry 3 "$URL.sha1" | awk '{print tolower($1); exit}')" \
    || [[ ! "$expected" =~ ^[0-9a-f]{40}$ ]]; then
    echo "error: no usable checksum at $URL.sha1" >&2
    exit 1
fi
curl -fsSL --retry 3 -o "$tmp" "$URL"
actual="$(sha1sum "$tmp" | cut -d' ' -f1)"
if [[ "$actual" != "$expected" ]]; then
    echo "error: sha1 mismatch for $URL: got $actual, Central says $expected" >&2
    exit 1
fi

chmod 0644 "$tmp"  # readable by the deploy user regardless of our umask
mv -f "$tmp" "$OUT"
echo "$expected" >"$OUT.sha1"
echo "$OUT"
