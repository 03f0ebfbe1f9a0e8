#!/usr/bin/env bash
# ops/chaos/faults.sh — broker faults (issue 13): the soak's stream (ops/chaos/soak.sh) goes through
# a cluster of embedded brokers that shows a plan's faults (default ops/chaos/faults.yaml: every
# broker down 10 s, one broker down, fetch / heartbeat / coordinator errors, half-second answers;
# no produce errors, for the reason the plan gives) while clickdiffd runs, never killed, and has to
# recover by itself. The soak's check:
# every good event stored once, every bad one dead-lettered and no good one, versions increasing;
# and, on the plan's clock, when everything was stored and the stalls (over 3 s with nothing
# stored), printed beside the faults as the broker applied them.
#
#   ops/chaos/faults.sh [OUT]   (default OUT: out/faults; made anew)
# Settings (environment): FAULTS_PLAN, the plan (default ops/chaos/faults.yaml); the soak's SOAK_*
# settings, with defaults SOAK_IMAGES=1200, SOAK_RATE=30 (about 2 minutes of stream, which the
# plan's faults fall inside), SOAK_BROKERS=3 and SOAK_KILLS=0.
set -euo pipefail
cd "$(dirname "$0")/../.."
export SOAK_FAULTS=${FAULTS_PLAN:-ops/chaos/faults.yaml}
export SOAK_IMAGES=${SOAK_IMAGES:-1200}
export SOAK_RATE=${SOAK_RATE:-30}
export SOAK_BROKERS=${SOAK_BROKERS:-3}
export SOAK_KILLS=${SOAK_KILLS:-0}
exec ops/chaos/soak.sh "${1:-out/faults}"
