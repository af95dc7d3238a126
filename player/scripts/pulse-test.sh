#!/usr/bin/env bash
# Runs the player's PulseAudio test against a private PulseAudio server with a null sink.
# Needs: apt-get install -y pulseaudio pulseaudio-utils libasound2-plugins
set -euo pipefail
cd "$(dirname "$0")/../.."
runtime=$(mktemp -d)
export XDG_RUNTIME_DIR="$runtime"
pulseaudio --daemonize=no --exit-idle-time=-1 -n --disable-shm=yes \
  --load=module-null-sink \
  --load="module-native-protocol-unix socket=$runtime/native auth-anonymous=1" \
  >"$runtime/pulseaudio.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; rm -rf "$runtime"' EXIT
export PULSE_SERVER="unix:$runtime/native"
for _ in $(seq 50); do pactl info >/dev/null 2>&1 && break; sleep 0.1; done
pactl info >/dev/null || { cat "$runtime/pulseaudio.log"; exit 1; }
# It must have run: a renamed or filtered-out test would otherwise pass as "0 passed".
cargo test -p player --test pulse -- --ignored --nocapture 2>&1 | tee "$runtime/test.log"
grep -q '^test result: ok\. 1 passed' "$runtime/test.log" ||
  { echo "the PulseAudio test did not run and pass" >&2; exit 1; }
