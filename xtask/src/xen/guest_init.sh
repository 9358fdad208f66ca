#!/bin/sh
# Backplane's guest /init (busybox). xtask fills in @MODULES@ (load order).
# Kernel command line: bp.test=<name> (default smoke), bp.tag=<prefix> (default GUEST),
# bp.end=poweroff|hold|shell (default poweroff), bp.nomodules=1 (load no module: no
# driver claims the virtio windows, so /dev/mem reaches them), bp.delay=<s> (sleep first).
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
if [ "$(arg bp.nomodules 0)" = 1 ]; then
    say "init: no modules loaded (bp.nomodules=1)"
else
    for m in @MODULES@; do
        insmod "/lib/modules/$m.ko" 2>/dev/null || say "insmod $m failed"
    done
fi

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
# Raw mode, no echo: the host must see exactly `echo: <line>\n`.
console_echo() {
    # Every hvc node exists; only the served console's opens. Try each with the
    # whole conversation in a subshell (a failed redirection ends only that): an
    # open-close probe would drop input the tty already took in.
    for h in /dev/hvc0 /dev/hvc1 /dev/hvc2 /dev/hvc3 /dev/hvc4 /dev/hvc5 /dev/hvc6 /dev/hvc7; do
        [ -c "$h" ] || continue
        (
            exec 3<>"$h"
            stty raw -echo <&3
            # Say we listen before the host types (as a login prompt would):
            # input that reaches a Linux virtio console before its port is
            # registered is dropped by the guest.
            echo "GUEST-CONSOLE-READY" >&3
            if read -t "$(arg bp.contimeout 30)" line <&3; then
                echo "echo: $line" >&3
                say "console $h line=$line"
                exit 0
            fi
            say "console: no line on $h; irqs: $(grep -i virtio /proc/interrupts | tr -s ' ' | cut -d' ' -f2-3 | tr '\n' ' ')"
            exit 3
        ) 2>/dev/null
        case $? in 0) return 0 ;; 3) return 1 ;; esac
    done
    say "console: no hvc opens"
    return 1
}

# What virtio_console knows about its ports (debugfs), one line each.
console_debug() {
    mount -t debugfs none /sys/kernel/debug 2>/dev/null
    for p in /sys/kernel/debug/virtio-ports/*; do
        [ -e "$p" ] && say "console debug $(basename "$p"): $(tr -s ' \t\n' ' ' < "$p")"
    done
}

# Network: static address, 5 pings to the host peer (10.0.2.2) behind QEMU's UDP tunnel.
net_ping() {
    [ -e /sys/class/net/eth0 ] || { say "net: no eth0"; return 1; }
    ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 || { say "net: ip failed"; return 1; }
    out=$(ping -c 5 -i 0.2 -W 3 10.0.2.2 2>&1) || true
    case "$out" in *Usage*|*usage*|*"invalid"*) out=$(ping -c 5 -W 3 10.0.2.2 2>&1) ;; esac
    say "net: $(echo "$out" | grep 'packets transmitted')"
    say "net: arp $(ip neigh show 10.0.2.2 | tr '\n' ' ')"
    echo "$out" | grep -q ' 5 packets received'
}

test_disk() { devices; disk_rw; }
test_full() { devices; disk_rw && rng_read; }
test_fullcon() { devices; disk_rw && rng_read && console_echo; }
# Every device; each part runs even when an earlier one failed (the host checks each).
test_all() {
    devices; r=0
    disk_rw || r=1; rng_read || r=1; console_echo || { r=1; console_debug; }; net_ping || r=1
    return $r
}

# ---- a hostile driver: the blk window by hand through /dev/mem ----
# Needs bp.nomodules=1 (no driver claims the window; IO_STRICT_DEVMEM) and mem=240M
# (the top 16 MiB of the 256 MiB bank are then not Linux's RAM, so /dev/mem may write
# rings there and Backplane can still map them: they are the domain's memory).
HW=$((0x02000000))          # blk window (libxl slot 0)
HB=$((0x4F000000))          # rings and buffers: desc +0, avail +0x1000, used +0x2000,
                            # header +0x3000, data +0x4000, status +0x5000
hx() { printf '0x%x' $(($1)); }
rd() { devmem "$(hx $((HW + $1)))" 32; }
wr() { devmem "$(hx $((HW + $1)))" 32 "$(hx "$2")"; }
mw() { devmem "$(hx "$1")" "$2" "$(hx "$3")"; }
mr() { devmem "$(hx "$1")" "$2"; }
# desc INDEX ADDR LEN FLAGS NEXT
desc() {
    a=$((HB + 16 * $1))
    mw $a 64 "$2"; mw $((a + 8)) 32 "$3"; mw $((a + 12)) 32 $(($4 | ($5 << 16)))
}
# setup DESC AVAIL USED: reset, ACK|DRIVER, VERSION_1, FEATURES_OK, queue 0 (8 entries), DRIVER_OK
hs_setup() {
    mw $((HB + 0x1000)) 32 0; mw $((HB + 0x1004)) 32 0; mw $((HB + 0x2000)) 32 0
    mw $((HB + 0x5000)) 8 0xff
    wr 0x70 0; wr 0x70 1; wr 0x70 3
    wr 0x24 1; wr 0x20 1; wr 0x24 0; wr 0x20 0
    wr 0x70 11
    [ $(($(rd 0x70) & 8)) -ne 0 ] || { say "hostile: FEATURES_OK refused: status $(rd 0x70)"; return 1; }
    wr 0x30 0; wr 0x38 8
    wr 0x80 $(($1 & 0xffffffff)); wr 0x84 $(($1 >> 32))
    wr 0x90 $(($2 & 0xffffffff)); wr 0x94 $(($2 >> 32))
    wr 0xa0 $(($3 & 0xffffffff)); wr 0xa4 $(($3 >> 32))
    wr 0x44 1
    wr 0x70 15
}
hs_rings() { hs_setup $HB $((HB + 0x1000)) $((HB + 0x2000)); }
# A blk read of sector 0 into data: header, data (512, device-writable), status.
hs_good_chain() {
    mw $((HB + 0x3000)) 64 0; mw $((HB + 0x3008)) 64 0
    desc 0 $((HB + 0x3000)) 16 1 1
    desc 1 $((HB + 0x4000)) 512 3 2
    desc 2 $((HB + 0x5000)) 1 2 0
}
# avail IDX: ring[0] = head 0, avail.idx = IDX
hs_avail() { mw $((HB + 0x1004)) 16 0; mw $((HB + 0x1000)) 32 $(($1 << 16)); }
# Notify queue 0 and report: needs_reset must be set, and a reset must clear the status.
hs_expect_reset() {
    before=$(rd 0x70)
    wr 0x50 0
    st=$(rd 0x70)
    wr 0x70 0
    after=$(rd 0x70)
    ok=0; [ $((st & 64)) -ne 0 ] && [ $((after)) -eq 0 ] && ok=1
    # Short: Xen splits a domU's console lines at ~128 characters.
    say "hostile case=$1 before=$((before)) notified=$((st)) reset=$((after)) ok=$ok"
    [ $ok = 1 ]
}

test_hostile() {
    fail=0
    magic=$(rd 0); id=$(rd 8)
    say "hostile: window magic=$magic device=$id version=$(rd 4)"
    [ $((magic)) -eq $((0x74726976)) ] && [ $((id)) -eq 2 ] || return 1
    grep -q "System RAM" /proc/iomem && say "hostile: RAM $(grep 'System RAM' /proc/iomem | tr -s ' ' | tr '\n' ' ')"
    # (a) a request header outside the guest's RAM (64 GiB: no frame there)
    hs_rings || fail=1
    hs_good_chain; desc 0 $((0x1000000000)) 16 1 1; hs_avail 1
    hs_expect_reset desc-outside-ram || fail=1
    # (b) a descriptor whose next is itself
    hs_rings || fail=1
    hs_good_chain; desc 0 $((HB + 0x3000)) 16 1 0; hs_avail 1
    hs_expect_reset desc-loop || fail=1
    # (c) avail.idx 100 ahead with 8 entries
    hs_rings || fail=1
    hs_good_chain; hs_avail 100
    hs_expect_reset avail-jump || fail=1
    # (d) the descriptor table outside RAM (between the banks)
    hs_setup $((0x180000000)) $((HB + 0x1000)) $((HB + 0x2000)) || fail=1
    hs_good_chain; hs_avail 1
    hs_expect_reset ring-outside-ram || fail=1
    # (e) the device works again: a well-formed read of sector 0
    hs_rings || fail=1
    hs_good_chain; hs_avail 1
    wr 0x50 0
    st=$(rd 0x70); used=$(mr $((HB + 0x2000)) 32); bst=$(mr $((HB + 0x5000)) 8)
    data=""
    for o in 0 4 8 12; do
        w=$(mr $((HB + 0x4000 + o)) 32)
        data="$data$(printf '%08x' $((w)) | sed 's/\(..\)\(..\)\(..\)\(..\)/\4\3\2\1/')"
    done
    ok=0; [ $((st)) -eq 15 ] && [ $((used >> 16)) -eq 1 ] && [ $((bst)) -eq 0 ] && ok=1
    say "hostile case=good-read st=$((st)) used=$((used >> 16)) blk=$((bst)) sector0=$data ok=$ok"
    [ $ok = 1 ] || fail=1
    wr 0x70 0
    [ $fail = 0 ]
}

# One domU writes its disk in a loop and crashes its kernel with the writes in flight.
test_crashio() {
    devices
    [ -b /dev/vda ] || { say "crash: no /dev/vda"; return 1; }
    ( while :; do dd if=/dev/zero of=/dev/vda bs=64k count=32 seek=64 oflag=direct 2>/dev/null; done ) &
    ( while :; do dd if=/dev/vda of=/dev/null bs=64k count=32 skip=96 iflag=direct 2>/dev/null; done ) &
    sleep "$(arg bp.crashafter 2)"
    say "crash: vda $(awk '$3=="vda"{print "reads="$4" writes="$8}' /proc/diskstats), crashing now"
    echo c > /proc/sysrq-trigger
    say "crash: still alive"
    return 1
}

# dom0 stand-in (Linux as dom0 while testing the plumbing): report and stay up.
test_dom0() {
    say ready
    devices
    return 0
}

# Benchmark (`cargo xtask bench xen`): /bptool is appended to a bench copy of the initramfs.
# Disk first (modules loaded as usual), then the transports' drivers are unloaded so
# /dev/mem may map the window at bp.mmio= (IO_STRICT_DEVMEM) for the MMIO round trip.
test_bench() {
    [ -x /bptool ] || { say "bench: no /bptool"; return 1; }
    [ -b /dev/vda ] || { say "bench: no /dev/vda"; return 1; }
    say "bench: vda ready"
    mb=$(arg bp.seqmb 16)
    /bptool randread /dev/vda "$(arg bp.iops 1000)" $((32 << 20)) || return 1
    for op in read write; do
        for mode in direct buffered; do
            sync; echo 3 > /proc/sys/vm/drop_caches
            /bptool seq /dev/vda $op $((mb << 20)) 65536 $mode || return 1
        done
    done
    for m in virtio_blk virtio_mmio; do
        rmmod "$m" 2>/dev/null || say "bench: rmmod $m failed"
    done
    /bptool mmio "$(arg bp.mmio 0x2000000)" "$(arg bp.mmiocount 2000)"
}

# ---- run ----
d=$(arg bp.delay 0)
[ "$d" != 0 ] && { say "init: waiting ${d} s"; sleep "$d"; }
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
