#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# /init of the initramfs tools/vm-check.sh builds (busybox sh). Mounts the
# host's root (9p tag "hostroot", read-only) with tmpfs where tests write and
# the checkout (tag "checkout", read-write) at its host path, then runs
# $fl.vmdir/run.sh chrooted into it and writes its exit status to
# $fl.vmdir/rc. The kernel command line carries fl.checkout=, fl.vmdir=, and
# fl.probe=1 (only prove the guest boots) or fl.shell=1.

/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

die() {
	echo "vm-init: $*"
	poweroff -f
}

checkout= vmdir= probe= shell=
for arg in $(cat /proc/cmdline); do
	case $arg in
	fl.checkout=*) checkout=${arg#fl.checkout=} ;;
	fl.vmdir=*) vmdir=${arg#fl.vmdir=} ;;
	fl.probe=1) probe=1 ;;
	fl.shell=1) shell=1 ;;
	esac
done
[ -n "$checkout" ] && [ -n "$vmdir" ] || die "fl.checkout= and fl.vmdir= are required"

for m in virtio_pci 9pnet_virtio 9p; do
	modprobe "$m" 2>/dev/null || grep -q "/$m.ko" "/lib/modules/$(uname -r)/modules.builtin" ||
		die "cannot load module $m"
done

# The root is the host's, whose /lib/modules is not this kernel's: what
# the tests load on demand must be loaded from here.
for m in veth sch_tbf; do
	modprobe "$m" 2>/dev/null
done

n=/newroot
p9="trans=virtio,version=9p2000.L,msize=524288"
mount -t 9p -o "$p9,ro,cache=loose" hostroot $n || die "cannot mount the host's root (9p)"
mount -t 9p -o "$p9,cache=mmap" checkout "$n$checkout" || die "cannot mount the checkout at $checkout"

if [ -n "$probe" ]; then
	: >"$n$vmdir/probe.ok"
	sync
	poweroff -f
fi

mount -t proc proc $n/proc
mount -t sysfs sysfs $n/sys
mount -t devtmpfs devtmpfs $n/dev
mkdir -p $n/dev/shm $n/dev/pts 2>/dev/null
# What udev would add: bash's process substitution needs /dev/fd.
ln -sf /proc/self/fd $n/dev/fd
ln -sf /proc/self/fd/0 $n/dev/stdin
ln -sf /proc/self/fd/1 $n/dev/stdout
ln -sf /proc/self/fd/2 $n/dev/stderr
mount -t tmpfs -o mode=1777 tmpfs $n/dev/shm
mount -t devpts devpts $n/dev/pts
for d in /tmp /var/tmp; do
	mount -t tmpfs -o mode=1777,size=70% tmpfs "$n$d" || die "cannot mount tmpfs on $d"
done
for d in /run /root; do
	mount -t tmpfs -o mode=755 tmpfs "$n$d" || die "cannot mount tmpfs on $d"
done
[ -d $n/dev/hugepages ] && mount -t hugetlbfs hugetlbfs $n/dev/hugepages
ip link set lo up
hostname faultline-vm

if [ -n "$shell" ]; then
	setsid cttyhack chroot $n /bin/bash -l
	poweroff -f
fi

rm -f "$n$vmdir/rc"
chroot $n /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
	PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	/bin/sh "$vmdir/run.sh"
echo $? >"$n$vmdir/rc"
sync
poweroff -f
