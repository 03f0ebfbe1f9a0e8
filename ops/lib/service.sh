# shellcheck shell=bash
# ops/lib/service.sh — sourced by the ops scripts that start clickdiffd in the background.

# wait_for_service VAR_DIR PID: waits (up to 60 s) until the clickdiffd with process id PID has
# written its runtime file VAR_DIR/clickdiffd.json; if it dies first, prints its log
# (VAR_DIR/clickdiffd.log) and exits the script with status 1.
wait_for_service() {
  local var=$1 pid=$2
  for _ in $(seq 600); do
    [[ -f $var/clickdiffd.json ]] && return 0
    kill -0 "$pid" 2>/dev/null || { cat "$var/clickdiffd.log"; exit 1; }
    sleep 0.1
  done
  echo "clickdiffd did not become ready within 60 s (log: $var/clickdiffd.log)" >&2
  exit 1
}
