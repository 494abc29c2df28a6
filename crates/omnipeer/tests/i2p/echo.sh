#!/usr/bin/env bash
# Runs inside two_routers.sh (SAM1/SAM2 set): `omnipeer ministream listen --sam $SAM2 --echo`
# on router 2, `omnipeer ministream connect --sam $SAM1` on router 1 echoes a file through
# I2P; a connect to a destination that does not exist must fail with a timeout.
# The listener sits on router 2, the floodfill: i2pd 2.45 on router 2 could not use the
# lease set router 1 published for a destination there ("Incorrect number of leases"), so
# streams are opened from router 1 towards router 2 (replies travel back fine).
#   echo.sh OMNIPEER WORKDIR BYTES
set -uo pipefail
OMNI=$1; W=$2; BYTES=$3
zero_hop=(--sam-option inbound.length=0 --sam-option outbound.length=0
          --sam-option inbound.quantity=1 --sam-option outbound.quantity=1)
head -c "$BYTES" /dev/urandom > "$W/in.bin"
RUST_LOG=${RUST_LOG:-info} "$OMNI" ministream listen --sam "$SAM2" "${zero_hop[@]}" --echo \
  > "$W/listen.out" 2> "$W/listen.err" &
LP=$!
trap 'kill $LP 2>/dev/null' EXIT
DEST=
for _ in $(seq 1 240); do
  DEST=$(awk '/^destination /{print $2}' "$W/listen.out")
  [ -n "$DEST" ] && break
  kill -0 $LP 2>/dev/null || { echo "echo.sh: listen exited:" >&2; cat "$W/listen.err" >&2; exit 10; }
  sleep 0.5
done
[ -n "$DEST" ] || { echo "echo.sh: no destination from listen" >&2; cat "$W/listen.err" >&2; exit 11; }
echo "echo.sh: listener destination ${DEST:0:24}…" >&2

# A well-formed destination nobody has: the SYN is resent, then the connect times out.
NOWHERE=$(python3 -c 'import base64,os;print(base64.b64encode(os.urandom(387)+b"\x00\x00\x00").decode().replace("+","-").replace("/","~"))')
"$OMNI" ministream connect --sam "$SAM1" "${zero_hop[@]}" --peer "$NOWHERE" --connect-timeout-ms 12000 \
  < /dev/null > "$W/nowhere.out" 2> "$W/nowhere.err" &
NP=$!

start=$(date +%s%N)
"$OMNI" ministream connect --sam "$SAM1" "${zero_hop[@]}" --peer "$DEST" --linger-ms 5000 \
  < "$W/in.bin" > "$W/out.bin" 2> "$W/connect.err"
rc=$?
end=$(date +%s%N)
wait $NP; nrc=$?
echo "connect rc=$rc bytes_in=$(stat -c %s "$W/in.bin") bytes_out=$(stat -c %s "$W/out.bin") ms=$(( (end - start) / 1000000 ))"
echo "nowhere rc=$nrc: $(tail -n 2 "$W/nowhere.err" | tr '\n' ' ')"
[ $rc = 0 ] || { cat "$W/connect.err" >&2; exit 12; }
cmp "$W/in.bin" "$W/out.bin" || exit 13
[ $nrc != 0 ] || exit 14
grep -qi "timed out\|no answer" "$W/nowhere.err" || exit 15
echo "echo.sh: OK"
