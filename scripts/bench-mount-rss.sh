#!/usr/bin/env bash
# bench-mount-rss.sh: the memory of a `strata mount` process while it
# reads many GiB (issue 3: "the client's memory stays bounded").
#
# Starts `strata dev` (3 voters, 6 dataservers, its own process) and a
# separate `strata mount` of it, writes one file of FILE_GIB GiB through
# the mount, then reads it ROUNDS times with dd (1 MiB blocks,
# iflag=nocache so that every round goes through FUSE again instead of
# the kernel's page cache), sampling the mount's RSS every second. Prints
# the RSS after the write, the peak RSS (VmHWM) and the read speed.
#
#   sudo scripts/bench-mount-rss.sh            # 2 GiB x 10 = 20 GiB
#   FILE_GIB=1 ROUNDS=2 scripts/bench-mount-rss.sh
set -euo pipefail
FILE_GIB=${FILE_GIB:-2}
ROUNDS=${ROUNDS:-10}
BASE_PORT=${BASE_PORT:-18700}
CACHE_BYTES=${CACHE_BYTES:-1073741824} # chunk cache: 1 GiB (smaller than the file)
work=$(mktemp -d /var/tmp/strata-rss.XXXXXX)
bin=$work/strata
go build -o "$bin" ./cmd/strata
mkdir -p "$work/mnt" "$work/cache"
dev_pid="" mount_pid=""
cleanup() {
	set +e
	[ -n "$mount_pid" ] && { fusermount3 -u "$work/mnt" 2>/dev/null || umount -l "$work/mnt"; kill "$mount_pid" 2>/dev/null; wait "$mount_pid" 2>/dev/null; }
	[ -n "$dev_pid" ] && { kill "$dev_pid"; wait "$dev_pid" 2>/dev/null; }
	rm -rf "$work"
}
trap cleanup EXIT
"$bin" dev --dir "$work/dev" --base-port "$BASE_PORT" --service-ip "" --fsync=false >"$work/dev.log" 2>&1 &
dev_pid=$!
metas=$BASE_PORT,$((BASE_PORT + 1)),$((BASE_PORT + 2))
metas=127.0.0.1:${metas//,/,127.0.0.1:}
for _ in $(seq 60); do "$bin" status --meta "$metas" >/dev/null 2>&1 && break; sleep 1; done
"$bin" mount --meta "$metas" --cache-dir "$work/cache" --cache-size "$CACHE_BYTES" "$work/mnt" >"$work/mount.log" 2>&1 &
mount_pid=$!
for _ in $(seq 60); do mountpoint -q "$work/mnt" && break; sleep 1; done
rss() { awk '/^VmRSS/ {print $2 / 1024 " MiB"}' "/proc/$mount_pid/status"; }
hwm() { awk '/^VmHWM/ {print $2 / 1024 " MiB"}' "/proc/$mount_pid/status"; }
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "mount RSS at start: $(rss)"
dd if=/dev/urandom of="$work/mnt/big" bs=1M count=$((FILE_GIB * 1024)) conv=fsync status=none
echo "mount RSS after writing $FILE_GIB GiB: $(rss) (peak $(hwm))"
peak=0
( while kill -0 "$mount_pid" 2>/dev/null; do awk '/^VmRSS/ {print $2}' "/proc/$mount_pid/status"; sleep 1; done ) >"$work/rss.samples" &
sampler=$!
start=$(date +%s.%N)
for _ in $(seq "$ROUNDS"); do
	dd if="$work/mnt/big" of=/dev/null bs=1M iflag=nocache status=none
done
end=$(date +%s.%N)
kill "$sampler" 2>/dev/null || true
peak=$(sort -n "$work/rss.samples" | tail -1)
total=$((FILE_GIB * ROUNDS))
echo "read $total GiB in $(echo "$end - $start" | bc) s: $(echo "$total * 1073.741824 / ($end - $start)" | bc) MB/s"
echo "mount RSS while reading: max sampled $((peak / 1024)) MiB; now $(rss); VmHWM (whole life) $(hwm)"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
