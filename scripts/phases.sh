#!/usr/bin/env bash
# Run `make <phase>` for each phase given, in order, and end with a table of the phases and their seconds, so the
# next person sees where the time goes. Stops at the first failing phase (the table still prints, the exit code is
# that phase's). The table is also written to .cache/test-results/phases.txt.
set -uo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
results="${repo_root}/.cache/test-results"
mkdir -p "${results}"
names=() seconds=() states=()
status=0
suite_start=${SECONDS}

table() {
  local total=$((SECONDS - suite_start))
  printf '\n%-28s %8s  %s\n' "phase" "seconds" "result"
  for i in "${!names[@]}"; do
    printf '%-28s %8d  %s\n' "${names[$i]}" "${seconds[$i]}" "${states[$i]}"
  done
  printf '%-28s %8d  (%d min %02d s)\n' "total" "${total}" $((total / 60)) $((total % 60))
}

for phase in "$@"; do
  echo "=== phase ${phase}: started $(date -u +%H:%M:%S)"
  start=${SECONDS}
  make --no-print-directory -C "${repo_root}" "${phase}"
  rc=$?
  names+=("${phase}") seconds+=($((SECONDS - start)))
  if ((rc != 0)); then
    states+=("FAILED (exit ${rc})") status=${rc}
    break
  fi
  states+=("ok")
done

table | tee "${results}/phases.txt"
exit "${status}"
