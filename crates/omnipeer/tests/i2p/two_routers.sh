#!/usr/bin/env bash
# A private two-router I2P network for the ministreaming interop test (docs/protocols/ministream.md#i2p-test-network).
# Run inside a fresh network namespace (`unshare -n`), as root:
#   two_routers.sh WORKDIR -- COMMAND [ARGS...]
# Starts two i2pd routers on 198.18.0.1 / 198.18.0.2 (private netid 77, no reseed, zero-hop
# tunnels), makes each know the other, waits until they are connected, then runs COMMAND
# with SAM1=127.0.0.1:17656 and SAM2=127.0.0.1:27656 in its environment, stops the routers
# and exits with COMMAND's status. Router logs stay in WORKDIR/r1, WORKDIR/r2.
set -euo pipefail
W=$(realpath -m "$1"); shift
[ "${1:-}" = "--" ] && shift
command -v i2pd >/dev/null || { echo "two_routers: i2pd not installed" >&2; exit 2; }

ip link set lo up
ip addr add 198.18.0.1/32 dev lo 2>/dev/null || true
ip addr add 198.18.0.2/32 dev lo 2>/dev/null || true

conf() { # N HOST NTCP2 SAM I2CP HTTP FLOODFILL
  local d="$W/r$1"
  mkdir -p "$d/tunnels.d" "$d/certificates"
  : > "$d/tunnels.conf"
  cat > "$d/i2pd.conf" <<CONF
datadir = $d
tunconf = $d/tunnels.conf
tunnelsdir = $d/tunnels.d
certsdir = $d/certificates
pidfile = $d/i2pd.pid
log = file
logfile = $d/i2pd.log
loglevel = info
daemon = false
host = $2
address4 = $2
ipv4 = true
ipv6 = false
nat = false
netid = 77
reservedrange = false
floodfill = $7
[ntcp2]
enabled = true
published = true
port = $3
[ssu2]
enabled = false
[http]
enabled = true
address = 127.0.0.1
port = $6
[httpproxy]
enabled = false
[socksproxy]
enabled = false
[sam]
enabled = true
address = 127.0.0.1
port = $4
[bob]
enabled = false
[i2cp]
enabled = true
address = 127.0.0.1
port = $5
[i2pcontrol]
enabled = false
[upnp]
enabled = false
[reseed]
verify = true
urls =
yggurls =
threshold = 0
[addressbook]
enabled = true
defaulturl = http://nonexistent.i2p/hosts.txt
subscriptions = http://nonexistent.i2p/hosts.txt
[nettime]
enabled = false
frompeers = false
[meshnets]
yggdrasil = false
[exploratory]
inbound.length = 0
outbound.length = 0
CONF
}
conf 1 198.18.0.1 17001 17656 17654 17070 false
conf 2 198.18.0.2 17002 27656 27654 17071 true

pids=()
start() { i2pd --datadir="$W/r$1" --conf="$W/r$1/i2pd.conf" >"$W/r$1/stdout.log" 2>&1 & pids+=($!); }
stop_all() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done; pids=(); }
trap stop_all EXIT

# First start: each router writes its router.info.
start 1; start 2
for _ in $(seq 1 100); do
  [ -s "$W/r1/router.info" ] && [ -s "$W/r2/router.info" ] && break
  sleep 0.2
done
[ -s "$W/r1/router.info" ] && [ -s "$W/r2/router.info" ] || { echo "two_routers: no router.info" >&2; exit 3; }
sleep 1
stop_all

# Each router's netDb gets the other's RouterInfo, named as i2pd names it: I2P-base64 of
# SHA-256 of the RouterIdentity (the first 387 + certificate-length bytes).
seed() { # SRC_DATADIR DST_DATADIR
  python3 - "$1/router.info" "$2" <<'PY'
import base64, hashlib, os, shutil, sys
src, dst = sys.argv[1], sys.argv[2]
ri = open(src, "rb").read()
ident = ri[:387 + int.from_bytes(ri[385:387], "big")]
name = base64.b64encode(hashlib.sha256(ident).digest()).decode().replace("+", "-").replace("/", "~")
d = os.path.join(dst, "netDb", "r" + name[0])
os.makedirs(d, exist_ok=True)
shutil.copy(src, os.path.join(d, f"routerInfo-{name}.dat"))
PY
}
seed "$W/r1" "$W/r2"
seed "$W/r2" "$W/r1"

start 1; start 2
ok=0
for _ in $(seq 1 120); do
  if ss -tn state established 2>/dev/null | grep -q '198.18.0.2:17002\|198.18.0.1:17001'; then ok=1; break; fi
  sleep 0.5
done
[ $ok = 1 ] || { echo "two_routers: the routers did not connect" >&2; exit 4; }
echo "two_routers: routers connected" >&2

set +e
SAM1=127.0.0.1:17656 SAM2=127.0.0.1:27656 "$@"
rc=$?
set -e
exit $rc
