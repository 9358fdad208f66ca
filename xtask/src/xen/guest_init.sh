#!/bin/sh
# Backplane's guest /init (busybox). xtask fills in @MODULES@ (load order).
# Kernel command line: bp.test=<name> (default smoke), bp.tag=<prefix> (default GUEST),
# bp.end=poweroff|hold|shell (default poweroff).
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null

arg() {
    for w in $(cat /proc/cmdline); do
        case "$w" in "$1="*) echo "${w#*=}"; return ;; esac
    done
    echo "$2"
}
TAG=$(arg bp.tag GUEST)
TEST=$(arg bp.test smoke)
END=$(arg bp.end poweroff)
say() { echo "$TAG: $*"; }

say "init: kernel $(uname -r), test=$TEST"
for m in @MODULES@; do
    insmod "/lib/modules/$m.ko" 2>/dev/null || say "insmod $m failed"
done

# One marker line per virtio device and per thing it became.
devices() {
    for d in /sys/bus/virtio/devices/*; do
        [ -e "$d" ] || continue
        drv=$(basename "$(readlink "$d/driver" 2>/dev/null)" 2>/dev/null)
        say "virtio $(basename "$d") device=$(cat "$d/device") vendor=$(cat "$d/vendor") driver=${drv:-none}"
    done
    for b in /sys/block/vd*; do
        [ -e "$b" ] || continue
        say "$(basename "$b") size=$(( $(cat "$b/size") * 512 ))"
    done
    for n in /sys/class/net/*; do
        [ -e "$n/device" ] || continue
        say "$(basename "$n") mac=$(cat "$n/address")"
    done
    rng=$(cat /sys/class/misc/hw_random/rng_current 2>/dev/null)
    [ -n "$rng" ] && [ "$rng" != none ] && say "hwrng current=$rng"
    for h in /dev/hvc* /dev/vport*; do
        [ -c "$h" ] && say "console $h"
    done
    return 0
}

# ---- tests: test_<name>, selected by bp.test=<name>; return non-zero on failure ----

test_smoke() {
    say ready
    devices
    if [ -b /dev/vda ]; then
        say "vda md5(first 4KiB)=$(dd if=/dev/vda bs=4096 count=1 2>/dev/null | md5sum | cut -d' ' -f1)"
    fi
    return 0
}

# dom0 stand-in (Linux as dom0 while testing the plumbing): report and stay up.
test_dom0() {
    say ready
    devices
    return 0
}

# ---- run ----
if type "test_$TEST" >/dev/null 2>&1; then
    if "test_$TEST"; then say "test $TEST PASS"; else say "test $TEST FAIL"; fi
else
    say "test $TEST FAIL (no such test)"
fi

case "$END" in
    hold) while true; do sleep 3600; done ;;
    shell) exec setsid cttyhack sh ;;
    *) sync; poweroff -f ;;
esac
