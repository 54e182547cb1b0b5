#!/bin/sh
# /init of the QEMU tier's guest (busybox sh; built into the initramfs by tests/qemu/run).
# Kernel command line: hvnet.mode=type1|noiommu.
#   1. loads the modules (Debian kernel) or uses the built-in drivers (small kernel);
#   2. brings the 82576 PF (8086:10c9) up, enables one VF, gives it an administrative MAC,
#      binds it to vfio-pci;
#   3. runs vfio_igbvf_check on it (frames both ways, checked on both ends);
#   4. when the program is ready, stamps the time and runs `echo 0 > sriov_numvfs` in the
#      background while the VF is held: the program must see the VFIO request IRQ and release;
#   5. prints RESULT lines (each with ok=0|1) and powers off.
# Every wait is a bounded poll on a condition.
set -euo pipefail

export PATH=/bin:/sbin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null || true
mount -t tmpfs tmpfs /tmp

up() { cut -d' ' -f1 /proc/uptime; }
say() { echo "[init $(up)] $*"; }
result() { echo "RESULT name=$1 ok=$2 ${3:-}"; }
finish() {
    if [ "${1:-0}" != 0 ]; then
        say "dmesg (vfio/igb/iommu lines):"
        dmesg | grep -iE 'vfio|igb|iommu|dmar|sriov|taint' | tail -n 40 || true
    fi
    result guest-done 1 "uptime=$(up)"
    sync
    poweroff -f
}
# bounded poll: wait_until SECONDS COMMAND...
wait_until() {
    _n=$(($1 * 10)); shift
    while ! "$@" 2>/dev/null; do
        _n=$((_n - 1)); [ $_n -gt 0 ] || return 1
        sleep 0.1
    done
}

MODE=type1
for w in $(cat /proc/cmdline); do
    case "$w" in hvnet.mode=*) MODE=${w#hvnet.mode=} ;; esac
done
say "kernel $(uname -r) mode=$MODE"
result boot 1 "uptime=$(up)"

for m in $(cat /modules.list); do
    insmod "/lib/modules/$m" || { result modules 0 "insmod $m failed"; finish 1; }
done

PF=""
for d in /sys/bus/pci/devices/*; do
    [ "$(cat "$d/vendor")" = 0x8086 ] && [ "$(cat "$d/device")" = 0x10c9 ] && PF=$(basename "$d")
done
[ -n "$PF" ] || { result pf 0 "no 8086:10c9 device"; finish 1; }
PFD=/sys/bus/pci/devices/$PF
wait_until 10 ls "$PFD/net/" >/dev/null || { result pf 0 "$PF has no netdev"; finish 1; }
PFIF=$(ls "$PFD/net" | head -n1)
ip link set "$PFIF" up
carrier() { [ "$(cat "/sys/class/net/$PFIF/carrier" 2>/dev/null)" = 1 ]; }
wait_until 15 carrier || { result pf 0 "$PFIF: no carrier"; finish 1; }
say "PF $PF ($PFIF) up"

if [ "$MODE" = noiommu ]; then
    # the vf crate's no-IOMMU DMA memory: pinned 2 MiB huge pages with physical addresses, and
    # nothing else (no small-page fallback): without them every DMA allocation fails
    echo 16 > /proc/sys/vm/nr_hugepages
    HUGE=$(cat /proc/sys/vm/nr_hugepages)
    say "huge pages: $HUGE"
    [ "$HUGE" -ge 16 ] || { result hugepages 0 "only $HUGE of 16 huge pages reserved"; finish 1; }
fi

echo 0 > "$PFD/sriov_drivers_autoprobe"
echo 1 > "$PFD/sriov_numvfs"
vf_link() { [ -e "$PFD/virtfn0" ]; }
wait_until 10 vf_link || { result vf 0 "no virtfn0 after sriov_numvfs=1"; finish 1; }
VF=$(basename "$(readlink "$PFD/virtfn0")")
VFD=/sys/bus/pci/devices/$VF
# Linux's igb PF NACKs a VF reset until the VF has an address: the administrator sets one
/sbin/ip link set "$PFIF" vf 0 mac 02:00:00:48:56:10 || { result vf 0 "setting the VF MAC failed"; finish 1; }
echo vfio-pci > "$VFD/driver_override"
echo "$VF" > /sys/bus/pci/drivers_probe
bound() { [ "$(basename "$(readlink "$VFD/driver")")" = vfio-pci ]; }
wait_until 10 bound || { result vf 0 "$VF not bound to vfio-pci"; finish 1; }
GROUP=$(basename "$(readlink "$VFD/iommu_group")")
result vf 1 "bdf=$VF id=$(cat "$VFD/vendor"):$(cat "$VFD/device") group=$GROUP nodes=$(ls /dev/vfio | tr '\n' ',')"
# the PF resets itself after enabling VFs; its carrier is back when it is done
wait_until 15 carrier || { result pf 0 "$PFIF: carrier lost after enabling VFs"; finish 1; }

vfio_igbvf_check --bdf "$VF" --mode "$MODE" --remove-start-file /tmp/remove-start \
    > /tmp/check.log 2>&1 &
CHECK=$!
ready() { grep -q READY-FOR-REMOVAL /tmp/check.log || ! kill -0 $CHECK; }
if wait_until 90 ready && grep -q READY-FOR-REMOVAL /tmp/check.log; then
    # host-initiated removal stand-in: the VF is still held by the program
    ( up > /tmp/remove-start; echo 0 > "$PFD/sriov_numvfs"; up > /tmp/remove-end ) &
    REMOVER=$!
else
    REMOVER=""
fi
RC=0
wait $CHECK || RC=$?
cat /tmp/check.log
result check-exit "$([ $RC = 0 ] && echo 1 || echo 0)" "rc=$RC"
if [ -n "$REMOVER" ]; then
    # returns once vfio-pci let go of the VF, i.e. after the program released it
    removed() { [ -s /tmp/remove-end ]; }
    if wait_until 30 removed; then
        wait $REMOVER || true
        T0=$(cat /tmp/remove-start); T1=$(cat /tmp/remove-end)
        GONE=$([ ! -e "$VFD" ] && [ "$(cat "$PFD/sriov_numvfs")" = 0 ] && echo 1 || echo 0)
        result vf-removed "$GONE" "echo_returned_after_s=$(echo "$T1 $T0" | awk '{printf "%.2f", $1-$2}') numvfs=$(cat "$PFD/sriov_numvfs")"
    else
        result vf-removed 0 "echo 0 > sriov_numvfs still blocked after 30 s"
    fi
else
    result vf-removed 0 "program never became ready for removal"
fi
finish $RC
