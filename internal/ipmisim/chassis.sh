#!/bin/bash
# ipmi_sim chassis_control program, written by internal/ipmisim into each
# BMC's directory (lan.conf: chassis_control "DIR/chassis.sh DIR").
# ipmi_sim runs it via popen() and blocks until it exits:
#   chassis.sh DIR get power boot  -> "power:0|1" and "boot:<device>"
#   chassis.sh DIR set power 1|0 | reset 1 | shutdown 1 | boot pxe | identify I F
# DIR/node.sh is the node; it runs in its own session (setsid), so its pid
# is its process group and power-off signals the whole group.
dir=$1; op=$2; shift 2
pidf=$dir/node.pid; bootf=$dir/bootdev
# A slow BMC: the harness writes a delay (seconds) into DIR/delay.
[ -s "$dir/delay" ] && sleep "$(<"$dir/delay")"
# Bash builtins only on the hot path: ipmi_sim waits for this script on
# every chassis command, so forks are IPMI latency.
echo "$EPOCHREALTIME $op $*" >> "$dir/chassis.log"

# PID 1 may reap orphans late: a zombie counts as dead.
running() { local st; read -r st < "/proc/$1/stat" 2>/dev/null || return 1; st=${st##*) }; [ "${st%% *}" != Z ]; }
alive() { local p; [ -s "$pidf" ] && read -r p < "$pidf" && running "$p"; }
start() {
  alive && return 0
  # Close every fd > 2 inherited from ipmi_sim (its socket, the popen
  # pipe): ipmi_sim reads the pipe to EOF, so a node holding it hangs it.
  ( for fd in /proc/self/fd/*; do fd=${fd##*/}; [ "$fd" -gt 2 ] && eval "exec $fd>&-"; done 2>/dev/null
    setsid "$dir/node.sh" </dev/null >>"$dir/node.log" 2>&1 &
    echo $! > "$pidf"
    echo "$EPOCHREALTIME $!" >> "$dir/boots" )
}
stop() {  # $1 = signal to the node's process group; SIGKILL after 5 s
  alive || { rm -f "$pidf"; return 0; }
  local p i; read -r p < "$pidf"; kill -"$1" -- -"$p" 2>/dev/null || kill -"$1" "$p" 2>/dev/null
  for i in $(seq 100); do running "$p" || break; sleep 0.05; done
  kill -KILL -- -"$p" 2>/dev/null; kill -KILL "$p" 2>/dev/null; rm -f "$pidf"
}

case $op in
get)
  for p in "$@"; do case $p in
    power) if alive; then echo "power:1"; else echo "power:0"; fi ;;
    boot)  if [ -s "$bootf" ]; then echo "boot:$(<"$bootf")"; else echo "boot:default"; fi ;;
    *) echo "Invalid parameter: $p"; exit 1 ;;
  esac; done ;;
set)
  while [ $# -ge 2 ]; do p=$1 v=$2; shift 2; case $p in
    # Power off is abrupt (SIGKILL), as a real one is; it also keeps
    # ipmi_sim, which waits for this script, from blocking while a node
    # cleans up. A soft off (shutdown) sends SIGTERM.
    power)    if [ "$v" = 1 ]; then start; else stop KILL; fi ;;
    reset)    if alive; then stop KILL; start; fi ;;
    shutdown) stop TERM ;;
    boot)     echo "$v" > "$bootf" ;;
    identify) [ $# -gt 0 ] && shift ;;
    *) echo "Invalid parameter: $p"; exit 1 ;;
  esac; done ;;
*) exit 1 ;;
esac
exit 0
