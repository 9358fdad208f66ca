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

# Disk: 16 MiB of random data written at 4 MiB, synced, caches dropped, read
# back; both md5s printed so the host can compare its file too.
disk_rw() {
    [ -b /dev/vda ] || { say "disk: no /dev/vda"; return 1; }
    dd if=/dev/urandom of=/tmp/pattern bs=1M count=16 2>/dev/null
    w=$(md5sum < /tmp/pattern | cut -d' ' -f1)
    if ! err=$(dd if=/tmp/pattern of=/dev/vda bs=64k seek=64 conv=fsync 2>&1); then
        say "disk: write failed: $(echo "$err" | tr '\n' ' ')"; dmesg | tail -5 | while read -r l; do say "dmesg: $l"; done
        return 1
    fi
    sync
    echo 3 > /proc/sys/vm/drop_caches
    r=$(dd if=/dev/vda bs=64k skip=64 count=256 2>/dev/null | md5sum | cut -d' ' -f1)
    say "disk wrote=16MiB at=4MiB md5=$w readback=$r"
    [ "$w" = "$r" ]
}

# Entropy: 64 bytes from the served virtio-rng, not all equal.
rng_read() {
    [ -c /dev/hwrng ] || { say "rng: no /dev/hwrng"; return 1; }
    hex=$(dd if=/dev/hwrng bs=64 count=1 2>/dev/null | od -An -tx1 | tr -d ' \n')
    say "rng bytes=$(( ${#hex} / 2 )) hex=$hex"
    [ ${#hex} -eq 128 ] && [ "$(echo "$hex" | tr -d "${hex%"${hex#?}"}")" != "" ]
}

# Console: one line from the host through the served virtio-console, echoed back.
console_echo() {
    c=""
    for h in /dev/hvc0 /dev/hvc1; do [ -c "$h" ] && c=$h; done
    [ -n "$c" ] || { say "console: no /dev/hvc*"; return 1; }
    if read -t 30 line < "$c"; then
        echo "echo: $line" > "$c"
        say "console line=$line"
    else
        say "console: no line within 30 s"; return 1
    fi
}

test_disk() { devices; disk_rw; }
test_full() { devices; disk_rw && rng_read; }
test_fullcon() { devices; disk_rw && rng_read && console_echo; }

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
