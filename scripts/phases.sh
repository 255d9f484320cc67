#!/usr/bin/env bash
# Run `make <phase>` for each phase given, in order, and end with a table of the phases and their seconds, so the
# next person sees where the time goes. Stops at the first failing phase (the table still prints, the exit code is
# that phase's). The table is also written to .cache/test-results/phases.txt.
# Each row also says how busy the whole machine was while the phase ran (every process, not only the phase's own):
# on 2 cores a phase's seconds depend on what runs beside it, and a busy figure well under 100 % in the lanes means
# a core sat idle.
#
# An argument "lanes: A B | C D" runs lanes side by side: phases A then B in one lane, C then D in another. A lane
# stops at its first failure; the others finish. Each phase's output goes to .cache/test-results/<phase>.log and is
# printed whole when the phase ends, so logs of phases running at the same time do not interleave.
set -uo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
results="${repo_root}/.cache/test-results"
mkdir -p "${results}"
rows="${results}/phases.rows"
: >"${rows}"
suite_start=${SECONDS}

# A yardstick of the machine's speed, taken before anything starts: one core's seconds for a fixed Python loop. The
# same code has taken 28 min on one day and 46 on another on machines of the same kind; this says which kind of day.
yardstick=$(python3 -c 'import time
started = time.process_time()
total = 0
for step in range(10_000_000):
    total += step
print(f"{time.process_time() - started:.2f}")' 2>/dev/null || echo "?")

# Busy and total CPU time of the machine so far, in clock ticks (/proc/stat: busy is everything but idle and iowait).
cpu_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat; }
suite_cpu=$(cpu_ticks)

# Percentage of the machine's CPU time that was busy between two cpu_ticks readings.
busy_percent() {
  local -a from=($1) to=($2)
  local total=$((to[1] - from[1]))
  ((total > 0)) && echo $((100 * (to[0] - from[0]) / total)) || echo 0
}

# A row of the table: phase, seconds, how busy the machine was (from the phase's starting cpu_ticks), result.
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$(busy_percent "$3" "$(cpu_ticks)")" "$4" >>"${rows}"; }

table() {
  local total=$((SECONDS - suite_start))
  printf '\n%-28s %8s  %-13s %s\n' "phase" "seconds" "machine busy" "result"
  while IFS=$'\t' read -r name seconds busy state; do
    printf '%-28s %8d  %11d %%  %s\n' "${name}" "${seconds}" "${busy}" "${state}"
  done <"${rows}"
  printf '%-28s %8d  %11d %%  (%d min %02d s, %d cores)\n' "total (wall clock)" "${total}" \
    "$(busy_percent "${suite_cpu}" "$(cpu_ticks)")" $((total / 60)) $((total % 60)) "$(nproc)"
  printf 'machine speed: a 10-million-step Python loop took %s CPU-s at the start (less is faster)\n' "${yardstick}"
  rerun_table
}

# Each Molecule scenario's converge and its idempotent re-run, from the timer callback's line after each step.
rerun_table() {
  local log
  for log in "${results}"/*.log; do
    [[ -f ${log} ]] || continue
    awk -v name="$(basename "${log}" .log)" '
      /(converge|idempotence).*Executing/ { step = ($0 ~ /idempotence/) ? "idempotence" : "converge" }
      /Playbook run took/ && step != "" {
        took = $0; sub(/.*took /, "", took); gsub(/[^0-9]+/, " ", took); split(took, t, " ")
        seconds[step] = ((t[1] * 24 + t[2]) * 60 + t[3]) * 60 + t[4]; step = ""
      }
      END {
        if (seconds["converge"] > 0 && ("idempotence" in seconds))
          printf "%-28s %8d s converge, %d s idempotent re-run (%d %%)\n", name, seconds["converge"], seconds["idempotence"],
            100 * seconds["idempotence"] / seconds["converge"]
      }' "${log}"
  done
}

# One phase in the foreground, its output straight to the terminal.
run_phase() {
  local phase=$1 start=${SECONDS} cpu rc
  cpu=$(cpu_ticks)
  echo "=== phase ${phase}: started $(date -u +%H:%M:%S)"
  make --no-print-directory -C "${repo_root}" "${phase}"
  rc=$?
  record "${phase}" $((SECONDS - start)) "${cpu}" "$( ((rc == 0)) && echo ok || echo "FAILED (exit ${rc})")"
  return "${rc}"
}

# One lane: its phases in order, each logged to a file and printed whole when it ends.
run_lane() {
  local phase start cpu rc
  for phase in "$@"; do
    start=${SECONDS}
    cpu=$(cpu_ticks)
    echo "=== phase ${phase}: started $(date -u +%H:%M:%S) (log: ${results}/${phase}.log)"
    make --no-print-directory -C "${repo_root}" "${phase}" >"${results}/${phase}.log" 2>&1
    rc=$?
    record "${phase}" $((SECONDS - start)) "${cpu}" "$( ((rc == 0)) && echo ok || echo "FAILED (exit ${rc})")"
    echo "=== phase ${phase}: ended $(date -u +%H:%M:%S), exit ${rc}; its output follows"
    cat "${results}/${phase}.log"
    echo "=== end of phase ${phase} output"
    ((rc == 0)) || return "${rc}"
  done
}

run_lanes() {
  local spec=$1 lane pids=() status=0 pid
  IFS='|' read -r -a lanes <<<"${spec}"
  for lane in "${lanes[@]}"; do
    # shellcheck disable=SC2086  # a lane is a space-separated list of phases
    run_lane ${lane} &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do
    wait "${pid}" || status=$?
  done
  return "${status}"
}

status=0
for phase in "$@"; do
  if [[ ${phase} == lanes:* ]]; then
    run_lanes "${phase#lanes:}" || { status=$?; break; }
  else
    run_phase "${phase}" || { status=$?; break; }
  fi
done

table | tee "${results}/phases.txt"
exit "${status}"
