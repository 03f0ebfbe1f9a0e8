# shellcheck shell=bash
# ops/lib/common.sh — sourced by every ops script, after it has changed to the repository root.
# Sourcing it installs one trap (EXIT, INT, TERM) that stops the processes registered with
# track_pid, and fails at once if a former script setting named CLICKDIFF_* is set (the programs
# take every CLICKDIFF_<KEY> variable as a config override and reject unknown keys, so script
# settings never use that prefix).
#
# PYTHON                     /usr/bin/python3, the interpreter ops/setup.sh installs numpy,
#                            matplotlib, PIL, zmq and protobuf for; a pyenv or venv `python3` first on
#                            PATH may lack them. Scripts run "$PYTHON", never `python3`.
# die MESSAGE...             prints "SCRIPT: MESSAGE" on stderr and exits 1.
# require_python             exits 1 unless $PYTHON exists and runs (for scripts using the stdlib only).
# require_python_modules MODULE...
#                            exits 1 unless $PYTHON exists and imports every MODULE; the message
#                            names the missing modules, their Debian packages and the fix
#                            (OPS_PYTHON_FIX, default "run ops/setup.sh").
# require_commands COMMAND...
#                            exits 1 unless every COMMAND is on PATH, naming the missing ones.
# track_pid PID [NAME]       registers a background child of this shell. When the script exits for
#                            any reason (its end, `exit`, a failure under set -e, SIGINT, SIGTERM),
#                            every registered process gets SIGTERM, then SIGKILL if it is still
#                            running after 30 s (at once on a second INT/TERM), and is waited for.
# stop_pid PID               SIGTERM to a registered process, waits for it and forgets it; returns
#                            its exit status (143 for a process that does not handle SIGTERM).
# sleep_for SECONDS          sleep that a signal to the script interrupts at once (a foreground
#                            `sleep` delays the trap until it ends).
# wait_for_service VAR_DIR PID
#                            waits (up to 60 s) until the clickdiffd with process id PID has written
#                            its runtime file VAR_DIR/clickdiffd.json; if it dies first, prints its
#                            log (VAR_DIR/clickdiffd.log) and exits 1; after 60 s says so and exits 1.
# score_lengths MODEL DIR NUM_CLASSES LONGEST "STEPS" [INFER_ARG...]
#                            scores the checkpoints of one training run on DIR/test: for each length
#                            in STEPS (space-separated), MODEL itself at LONGEST, otherwise the
#                            checkpoint saved at it (MODEL without .pt, then .stepN.pt), infers
#                            DIR/test/images from DIR/test/clicks.jsonl ($CLI infer INFER_ARG...)
#                            and writes its scores against DIR/test/truth beside it (.scores.json);
#                            skipped where the scores are newer than the checkpoint. Needs CLI.
# start_broker LOG ARG...    starts `$CLI broker ARG...` in the background (registered with
#                            track_pid), its output in LOG (made anew), and waits up to 20 s for
#                            the address it prints: sets BROKER (its process id) and BOOTSTRAP
#                            (host:port[,host:port...]); prints LOG and exits 1 if it dies first.
#                            Needs CLI.
# link_every DIR EVERY DEST  links every EVERY-th image of DIR/images (sorted) and its mask
#                            DIR/truth/<name> into DEST/images and DEST/truth (DEST made anew).

[[ -n ${_OPS_COMMON_SOURCED:-} ]] && return 0
_OPS_COMMON_SOURCED=1

PYTHON=/usr/bin/python3
OPS_PYTHON_FIX="run ops/setup.sh"
_OPS_SCRIPT=${0##*/}
declare -gA _OPS_TRACKED=()  # pid -> name
_OPS_STOP_GRACE_S=30

die() {
  echo "$_OPS_SCRIPT: $*" >&2
  exit 1
}

require_python() {
  [[ -x $PYTHON ]] || die "$PYTHON not found: run ops/setup.sh (it installs Debian's python3)"
  "$PYTHON" -c '' 2>/dev/null || die "$PYTHON does not run: run ops/setup.sh"
}

require_python_modules() {
  require_python
  local missing
  missing=$("$PYTHON" - "$@" <<'PY'
import importlib, sys
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except Exception:  # ImportError, or a broken install raising anything else
        print(name)
PY
  ) || die "$PYTHON does not run: run ops/setup.sh"
  [[ -z $missing ]] && return 0
  local names name packages=()
  mapfile -t names <<<"$missing"
  for name in "${names[@]}"; do
    case $name in
      PIL) packages+=(python3-pil) ;;
      google.protobuf) packages+=(python3-protobuf) ;;
      *) packages+=("python3-${name%%.*}") ;;
    esac
  done
  die "$PYTHON cannot import: ${names[*]} (Debian packages: ${packages[*]}): $OPS_PYTHON_FIX"
}

require_commands() {
  local c missing=()
  for c in "$@"; do command -v "$c" >/dev/null || missing+=("$c"); done
  ((${#missing[@]} == 0)) || die "not on PATH: ${missing[*]}: run ops/setup.sh"
}

# build_cli PRESET: configures and builds the `clickdiff` program of a CMake preset; sets CLI to it.
build_cli() {
  require_commands cmake
  cmake --preset "$1" >/dev/null
  cmake --build --preset "$1" --target clickdiff >/dev/null
  CLI=build/$1/services/clickdiff
}

start_broker() {
  local log=$1
  shift
  : >"$log"
  "$CLI" broker "$@" >>"$log" 2>&1 &
  BROKER=$!
  track_pid "$BROKER" broker
  BOOTSTRAP=
  for _ in $(seq 200); do
    BOOTSTRAP=$(grep -m1 -oE '^127\.0\.0\.1:[0-9]+(,127\.0\.0\.1:[0-9]+)*' "$log" || true)
    [[ -n $BOOTSTRAP ]] && return 0
    kill -0 "$BROKER" 2>/dev/null || { cat "$log"; die "the broker did not start"; }
    sleep 0.1
  done
  die "the broker printed no address within 20 s ($log)"
}

# link_every DIR EVERY DEST: links every EVERY-th image of DIR/images (sorted) and its truth mask
# DIR/truth/<name> into DEST/images and DEST/truth, and its scribbles DIR/scribbles/<name> into
# DEST/scribbles where DIR has them (DEST is made anew).
link_every() {
  rm -rf "$3" && mkdir -p "$3/images" "$3/truth"
  if [[ -d $1/scribbles ]]; then mkdir -p "$3/scribbles"; fi
  local i=0 name path
  for path in "$1"/images/*.png; do
    name=$(basename "$path")
    if ((i % $2 == 0)); then
      ln -s "$(realpath "$path")" "$3/images/$name"
      ln -s "$(realpath "$1/truth/$name")" "$3/truth/$name"
      if [[ -f $1/scribbles/$name ]]; then
        ln -s "$(realpath "$1/scribbles/$name")" "$3/scribbles/$name"
      fi
    fi
    i=$((i + 1))
  done
}

score_lengths() {
  local model=$1 dir=$2 num_classes=$3 longest=$4 steps=$5 n m scores
  shift 5
  for n in $steps; do
    m=$model
    [[ $n != "$longest" ]] && m=${model%.pt}.step$n.pt
    scores=${m%.pt}.scores.json
    [[ -s $scores && $scores -nt $m ]] && continue
    "$CLI" infer "$@" --model "$m" --images "$dir/test/images" --clicks "$dir/test/clicks.jsonl" \
      --out "${m%.pt}.pred" >/dev/null
    "$CLI" eval --classes "$num_classes" --pred "${m%.pt}.pred" --truth "$dir/test/truth" >"$scores"
  done
}

# clicks_of FILE DIR OUT: the lines of the clicks file FILE whose image is in DIR, to OUT.
clicks_of() {
  "$PYTHON" -c 'import json, os, sys
names = set(os.listdir(sys.argv[2]))
for line in open(sys.argv[1]):
    if line.strip() and json.loads(line)["image"] in names: print(line.strip())' "$1" "$2" >"$3"
}

# generated_sets [--color] DIR SET...: the experiments' generated binary-organ sets under DIR, each
# made once with its own seed: train (96 images, seed 1), val (16, seed 2), test (24, seed 3);
# --color: RGB images whose organs also differ in hue (clickdiff generate --color). Needs CLI.
generated_sets() {
  local color=() dir set count seed
  if [[ $1 == --color ]]; then
    color=(--color)
    shift
  fi
  dir=$1
  shift
  for set in "$@"; do
    case $set in
      train) count=96 seed=1 ;;
      val) count=16 seed=2 ;;
      test) count=24 seed=3 ;;
      *) die "generated_sets: unknown set '$set' (train, val or test)" ;;
    esac
    [[ -d $dir/$set ]] ||
      "$CLI" generate --out "$dir/$set" --count "$count" --seed "$seed" "${color[@]}" >/dev/null
  done
}

track_pid() {
  _OPS_TRACKED[$1]=${2:-process}
}

stop_pid() {
  local pid=$1 status=0
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" || status=$?
  unset "_OPS_TRACKED[$pid]"
  return "$status"
}

sleep_for() {
  sleep "$1" &
  local pid=$!
  track_pid "$pid" sleep
  wait "$pid" || true
  unset "_OPS_TRACKED[$pid]"
}

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

# _ops_running PID: whether PID is still a running child of this shell (not a zombie).
_ops_running() {
  local stat state ppid
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  read -r state ppid _ <<<"${stat##*) }"
  [[ $state != Z && $ppid == "$BASHPID" ]]
}

_ops_cleanup() {
  local status=$?
  set +e
  trap '_OPS_STOP_GRACE_S=0' INT TERM
  local pids=("${!_OPS_TRACKED[@]}") pid
  if ((${#pids[@]} > 0)); then
    for pid in "${pids[@]}"; do
      [[ ${_OPS_TRACKED[$pid]} == sleep ]] || echo "$_OPS_SCRIPT: stopping ${_OPS_TRACKED[$pid]} (pid $pid)" >&2
      kill -TERM "$pid" 2>/dev/null
    done
    local start=$SECONDS
    for pid in "${pids[@]}"; do
      while _ops_running "$pid" && ((SECONDS - start < _OPS_STOP_GRACE_S)); do sleep 0.1; done
      if _ops_running "$pid"; then
        echo "$_OPS_SCRIPT: ${_OPS_TRACKED[$pid]} (pid $pid) ignored SIGTERM: SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null
      fi
      wait "$pid" 2>/dev/null
    done
    _OPS_TRACKED=()
  fi
  trap - EXIT INT TERM
  exit "$status"
}

# _ops_interrupted SIGNAL STATUS
_ops_interrupted() {
  echo "$_OPS_SCRIPT: interrupted (SIG$1)" >&2
  exit "$2"
}

trap _ops_cleanup EXIT
trap '_ops_interrupted INT 130' INT
trap '_ops_interrupted TERM 143' TERM

# Former script settings: the programs would reject them as unknown config keys.
declare -gA _OPS_RENAMED=(
  [CLICKDIFF_PRESET]="ops/test.sh --preset NAME"
  [CLICKDIFF_DEMO_SET]=DEMO_SET
  [CLICKDIFF_EXP_PRESET]=EXP_PRESET [CLICKDIFF_EXP_STEPS]=EXP_STEPS
  [CLICKDIFF_EXP_UNET_STEPS]=EXP_UNET_STEPS [CLICKDIFF_EXP_IMAGES]=EXP_IMAGES
  [CLICKDIFF_EXP_CLICKED]=EXP_CLICKED [CLICKDIFF_EXP_ROUNDS]=EXP_ROUNDS
  [CLICKDIFF_EXP_SET]=EXP_SET [CLICKDIFF_EXP_VARIANTS]=EXP_VARIANTS
  [CLICKDIFF_ACDC_DATA]=ACDC_DATA [CLICKDIFF_ACDC_SECONDS]=ACDC_SECONDS
  [CLICKDIFF_ACDC_VAL_EVERY]=ACDC_VAL_EVERY [CLICKDIFF_ACDC_TEST_EVERY]=ACDC_TEST_EVERY
  [CLICKDIFF_BENCH_PRESET]=BENCH_PRESET
)
for _ops_old in "${!_OPS_RENAMED[@]}"; do
  if [[ -v $_ops_old ]]; then
    die "$_ops_old is no longer read (CLICKDIFF_* variables are config keys of the programs): use ${_OPS_RENAMED[$_ops_old]}"
  fi
done
unset _ops_old
