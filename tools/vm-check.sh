#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Run faultline's tests on another kernel: boot a Debian kernel package under
# QEMU and run the chosen suites inside it, on the binaries of build/.
#
#   tools/vm-check.sh [--kernel 6.1] [--suites "kernel unit ..."] [--demo]
#                     [--build DIR] [--mem SIZE] [--smp N] [--scale N]
#                     [--timeout MIN] [--accel kvm|tcg|auto] [--shell]
#
#   --kernel V     the Debian package linux-image-V.0-N-amd64, newest N
#                  (default 6.1: Debian 12's own kernel)
#   --suites LIST  meson test suites to run (default: the ones CI runs,
#                  "kernel unit api watch clone image"; "all" runs every one)
#   --exclude LIST suites to leave out (e.g. "man abi": they do not depend
#                  on the kernel, and rendering every man page under TCG
#                  takes half an hour)
#   --demo         also run `faultline demo` at its default size
#   --build DIR    the build directory to test (default build/; built first
#                  with ninja if it is configured, with `meson setup` if not)
#   --mem SIZE     guest memory (default 3G, 6G with --demo: its 1 GiB image
#                  is written twice to tmpfs and pushed to a redis-server);
#                  --smp N guest CPUs (default:
#                  the host's, at most 4)
#   --scale N      FAULTLINE_TIMEOUT_SCALE and meson's --timeout-multiplier
#                  inside the guest (default 10 under TCG, 2 under KVM)
#   --timeout MIN  kill the guest after MIN minutes (default 60; 180 with
#                  --suites all, which takes 70-80 minutes under TCG)
#   --accel A      kvm, tcg or auto (default: kvm when a KVM guest actually
#                  boots here, else tcg)
#   --shell        an interactive shell in the guest instead of the tests
#
# The guest sees the host's root filesystem read-only over 9p, tmpfs where
# tests write (/tmp, /run, /dev/shm, /var/tmp, /root), the checkout
# read-write at the same path (so build/ works unchanged), 2 MiB huge pages
# reserved and loopback up. Like tools/check.sh, every case line goes to a
# results file and the last line is "N passed, N failed, N skipped";
# exit 0 when nothing failed and at least one case ran.
#
# Installs what it needs, idempotently: qemu-system-x86, busybox-static,
# meson and ninja-build with apt-get (tools/install-deps.sh too when the
# build directory is not configured yet); the kernel package is downloaded (apt-get download) and
# unpacked into $FL_VM_CACHE (default /var/cache/faultline-vm), never
# installed on the host. Run as root (9p export of / and apt).

set -uo pipefail

usage() {
	awk 'NR >= 4 && /^#/ { sub(/^# ?/, ""); print; next } NR >= 4 { exit }' "$0"
}

kernel=6.1
suites="kernel unit api watch clone image"
exclude=
demo=0
build=
mem=
smp=$(nproc 2>/dev/null || echo 2)
[ "$smp" -gt 4 ] && smp=4
scale=
timeout_min=
accel=auto
shell=0
while [ $# -gt 0 ]; do
	case $1 in
	--kernel | --suites | --exclude | --build | --mem | --smp | --scale | --timeout | --accel)
		[ $# -ge 2 ] || { echo "vm-check: $1 needs a value" >&2; usage >&2; exit 2; }
		case $1 in
		--kernel) kernel=$2 ;;
		--suites) suites=$2 ;;
		--exclude) exclude=$2 ;;
		--build) build=$2 ;;
		--mem) mem=$2 ;;
		--smp) smp=$2 ;;
		--scale) scale=$2 ;;
		--timeout) timeout_min=$2 ;;
		--accel) accel=$2 ;;
		esac
		shift
		;;
	--demo) demo=1 ;;
	--shell) shell=1 ;;
	-h | --help) usage; exit 0 ;;
	*) echo "vm-check: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
	esac
	shift
done
if [ -z "$mem" ]; then
	if [ "$demo" = 1 ]; then mem=6G; else mem=3G; fi
fi
if [ -z "$timeout_min" ]; then
	if [ "$suites" = all ]; then timeout_min=180; else timeout_min=60; fi
fi
case $accel in
kvm | tcg | auto) ;;
*) echo "vm-check: --accel must be kvm, tcg or auto, not '$accel'" >&2; exit 2 ;;
esac
if ! [[ $kernel =~ ^[0-9]+\.[0-9]+$ ]]; then
	echo "vm-check: --kernel wants a version like 6.1, not '$kernel'" >&2
	exit 2
fi
if ! [[ $smp =~ ^[1-9][0-9]*$ && $timeout_min =~ ^[1-9][0-9]*$ ]]; then
	echo "vm-check: --smp and --timeout want positive integers" >&2
	exit 2
fi
if [ -n "$scale" ] && ! [[ $scale =~ ^[0-9]+(\.[0-9]+)?$ ]]; then
	echo "vm-check: --scale wants a number, not '$scale'" >&2
	exit 2
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "vm-check: run as root (it exports / to the guest and installs packages)" >&2
	exit 1
fi

cd "$(dirname "$0")/.." || exit 1
root=$PWD
build=${build:-$root/build}
build=$(realpath -m "$build")
case $build in
"$root"/*) ;;
*) echo "vm-check: the build directory must be inside the checkout ($root)" >&2; exit 2 ;;
esac
cache=${FL_VM_CACHE:-/var/cache/faultline-vm}

# Suite names are checked before anything is fetched or booted: meson runs
# nothing for a wrong one ("clone,watch" instead of "clone watch").
known=" $(sed -n "s/.*suite *: *'\([a-z0-9_-]*\)'.*/\1/p" "$root"/test/*/meson.build "$root"/test/meson.build |
	sort -u | tr '\n' ' ')"
for s in $([ "$suites" != all ] && echo "$suites") $exclude; do
	if [[ $known != *" $s "* ]]; then
		echo "vm-check: no test suite '$s' (separate suites with spaces; known:$known)" >&2
		exit 2
	fi
done

log() { echo "vm-check: $*"; }

# ---- what the host needs -----------------------------------------------------
need_packages() {
	local pkg status missing=()

	for pkg in "$@"; do
		status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)
		[ "${status##* }" = installed ] || missing+=("$pkg")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	log "installing ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null ||
		{ apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; }
}
# meson and ninja: the host builds, and the guest runs meson test from the host's root.
vm_packages=(qemu-system-x86 busybox-static meson ninja-build)
need_packages "${vm_packages[@]}" || { echo "vm-check: could not install ${vm_packages[*]}" >&2; exit 1; }

# ---- the kernel --------------------------------------------------------------
# The newest linux-image-$kernel.0-N-amd64 the archive has, unpacked once.
kernel_pkg() {
	apt-cache search --names-only "^linux-image-${kernel//./\\.}\\.[0-9]+-[0-9]+-amd64\$" 2>/dev/null |
		awk '{ print $1 }' | sort -V | tail -n 1
}
pkg=$(kernel_pkg)
if [ -z "$pkg" ]; then
	apt-get update -q >/dev/null 2>&1
	pkg=$(kernel_pkg)
fi
if [ -z "$pkg" ]; then
	echo "vm-check: no linux-image-$kernel.*-amd64 package in the apt sources" >&2
	exit 1
fi
kdir=$cache/$pkg
if [ ! -f "$kdir/.unpacked" ]; then
	log "downloading $pkg"
	rm -rf "$kdir" && mkdir -p "$kdir/deb" || exit 1
	# apt's sandbox user cannot write to root's directories: download as root.
	if ! (cd "$kdir/deb" && apt-get download -q -o APT::Sandbox::User=root "$pkg" >/dev/null) ||
			! dpkg-deb -x "$kdir"/deb/*.deb "$kdir/root"; then
		echo "vm-check: could not download or unpack $pkg" >&2
		exit 1
	fi
	rm -rf "$kdir/deb"
	touch "$kdir/.unpacked"
fi
kver=${pkg#linux-image-}
vmlinuz=$kdir/root/boot/vmlinuz-$kver
moddir=$kdir/root/lib/modules/$kver
[ -f "$vmlinuz" ] || { echo "vm-check: $vmlinuz missing (remove $kdir and retry)" >&2; exit 1; }

# ---- the initramfs -----------------------------------------------------------
# busybox, the 9p and virtio modules, and init (tools/vm-init.sh).
initrd=$kdir/initrd-faultline.gz
if [ ! -f "$initrd" ] || [ "$root/tools/vm-init.sh" -nt "$initrd" ]; then
	log "building the initramfs"
	ird=$(mktemp -d) || exit 1
	mkdir -p "$ird"/{bin,dev,proc,sys,newroot,lib/modules/"$kver"}
	cp /bin/busybox "$ird/bin/busybox" && ln -s busybox "$ird/bin/sh" || exit 1
	cp "$root/tools/vm-init.sh" "$ird/init" && chmod 755 "$ird/init" || exit 1
	for m in virtio virtio_ring virtio_pci virtio_pci_modern_dev virtio_pci_legacy_dev \
			9pnet 9pnet_virtio 9p netfs fscache; do
		f=$(find "$moddir/kernel" -name "$m.ko*" | head -n 1)
		if [ -z "$f" ]; then
			# Built in (=y) in this kernel: nothing to load.
			grep -q "/$m.ko" "$moddir/modules.builtin" 2>/dev/null && continue
			echo "vm-check: module $m is neither in $pkg nor built in" >&2
			rm -rf "$ird"
			exit 1
		fi
		mkdir -p "$ird/lib/modules/$kver/$(dirname "${f#$moddir/}")"
		cp "$f" "$ird/lib/modules/$kver/${f#$moddir/}"
	done
	# Optional: the migration tests join network namespaces with a veth
	# pair and limit it with tbf; without them those cases fail by name.
	for m in veth sch_tbf; do
		f=$(find "$moddir/kernel" -name "$m.ko*" | head -n 1)
		[ -n "$f" ] || continue
		mkdir -p "$ird/lib/modules/$kver/$(dirname "${f#$moddir/}")"
		cp "$f" "$ird/lib/modules/$kver/${f#$moddir/}"
	done
	cp "$moddir"/modules.builtin* "$ird/lib/modules/$kver/" 2>/dev/null
	busybox depmod -b "$ird" "$kver" || { rm -rf "$ird"; exit 1; }
	(cd "$ird" && find . | busybox cpio -o -H newc 2>/dev/null | gzip -1) >"$initrd.tmp.$$" &&
		mv "$initrd.tmp.$$" "$initrd"
	rm -rf "$ird"
fi

# ---- the build under test ----------------------------------------------------
if [ "$shell" = 0 ]; then
	if [ ! -f "$build/build.ninja" ]; then
		# A fresh clone: the compiler and the libraries the build needs.
		"$root/tools/install-deps.sh" || { echo "vm-check: tools/install-deps.sh failed" >&2; exit 1; }
		meson setup "$build" >/dev/null || exit 1
	fi
	ninja -C "$build" >/dev/null || { echo "vm-check: the build failed (ninja -C $build)" >&2; exit 1; }
fi

# ---- the accelerator ---------------------------------------------------------
# /dev/kvm may exist and still not run an ordinary guest (here it belongs to a
# PVM module): KVM is used only if a guest boots with it to our init.
vmdir=$build/vm
mkdir -p "$vmdir" || exit 1
qemu_base=(qemu-system-x86_64 -nographic -no-reboot -m "$mem" -smp "$smp"
	-cpu max -kernel "$vmlinuz" -initrd "$initrd"
	-virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap"
	-virtfs "local,path=$root,mount_tag=checkout,security_model=none,multidevs=remap")
cmdline="console=ttyS0 panic=-1 hugepages=64 loglevel=3 fl.checkout=$root fl.vmdir=$vmdir"

if [ "$accel" = auto ]; then
	accel=tcg
	if [ -w /dev/kvm ]; then
		rm -f "$vmdir/probe.ok"
		# In a subshell that outlives qemu (the "|| true"): qemu aborting
		# here is an answer, not an error, and the subshell's own
		# "Aborted" report goes to /dev/null with its stderr.
		(timeout 60 "${qemu_base[@]}" -accel kvm -append "$cmdline fl.probe=1" \
			>"$vmdir/probe.log" 2>&1 </dev/null || true) 2>/dev/null
		if [ -f "$vmdir/probe.ok" ]; then
			accel=kvm
		else
			log "/dev/kvm cannot run this guest (see $vmdir/probe.log): TCG"
		fi
	fi
fi
if [ -z "$scale" ]; then
	if [ "$accel" = kvm ]; then scale=2; else scale=10; fi
fi

# ---- what the guest runs -----------------------------------------------------
results=$vmdir/results.txt
testlog=$build/meson-logs/vm.json
rm -f "$results" "$testlog" "$vmdir/rc" "$vmdir/meson-rc" "$vmdir/features.txt"
suite_args=()
if [ "$suites" != all ]; then
	for s in $suites; do
		suite_args+=(--suite "$s")
	done
fi
for s in $exclude; do
	suite_args+=(--no-suite "$s")
done
{
	echo "#!/bin/sh"
	echo "# Written by tools/vm-check.sh; run by the guest's init in the chroot."
	echo "cd '$root' || exit 1"
	echo "uname -r"
	echo "'$build/cli/faultline' check >'$vmdir/features.txt' 2>&1"
	echo "export FL_TEST_RESULTS='$results' FAULTLINE_TIMEOUT_SCALE='$scale'"
	echo "export FAULTLINE_REQUIRE_FEATURES=kernel"
	echo "unset FAULTLINE_MASK_FEATURES ASAN_OPTIONS UBSAN_OPTIONS"
	# Through cat: meson draws a progress spinner on a terminal (the
	# serial console is one), and its exit status goes through a file.
	# meson wants an integer multiplier: rounded up, never below the scale.
	printf "{ meson test -C '%s' --no-rebuild --num-processes %s --print-errorlogs --logbase vm --timeout-multiplier %s" \
		"$build" "$smp" "$(awk -v s="$scale" 'BEGIN { r = int(s); if (r < s) r++; print r }')"
	printf " %q" "${suite_args[@]}"
	echo " 2>&1; echo \$? >'$vmdir/meson-rc'; } | cat"
	echo "rc=\$(cat '$vmdir/meson-rc')"
	if [ "$demo" = 1 ]; then
		echo "if FAULTLINE_TIMEOUT_SCALE='$scale' '$build/cli/faultline' demo; then"
		echo "  echo 'PASS demo/default-size' >>'$results'"
		echo "else"
		echo "  echo 'FAIL demo/default-size' >>'$results'; rc=1"
		echo "fi"
	fi
	echo "exit \$rc"
} >"$vmdir/run.sh"
chmod 755 "$vmdir/run.sh"
[ "$shell" = 1 ] && cmdline="$cmdline fl.shell=1"

log "booting $pkg ($accel, $smp CPUs, $mem; suites: $suites${exclude:+ except $exclude}; scale $scale)"
start=$SECONDS
if [ "$shell" = 1 ]; then
	"${qemu_base[@]}" -accel "$accel" -append "$cmdline"
	exit $?
fi
timeout --foreground $((timeout_min * 60)) "${qemu_base[@]}" -accel "$accel" \
	-append "$cmdline" </dev/null 2>&1 | tee "$vmdir/console.log" |
	grep --line-buffered -E '^(PASS|FAIL|SKIP) |^ *[0-9]+/[0-9]+ |^vm-init:|^[0-9]+\.[0-9]+\.[0-9]+-'
qemu_rc=${PIPESTATUS[0]}
elapsed=$((SECONDS - start))

# ---- the verdict ---------------------------------------------------------------
all=$vmdir/all.txt
: >"$all"
if [ -f "$results" ]; then
	awk '$1 ~ /^(PASS|FAIL|SKIP)$/ { v = $1; sub(/^[A-Z]+[ \t]+/, ""); print v " vm/" $0 }' \
		"$results" >>"$all"
fi
if [ -f "$testlog" ]; then
	python3 "$root/tools/testlog-verdicts.py" "$testlog" vm >>"$all"
fi
if [ ! -f "$vmdir/rc" ]; then
	if [ "$qemu_rc" = 124 ]; then
		echo "FAIL vm/guest (killed after $timeout_min minutes; see $vmdir/console.log)" >>"$all"
	else
		echo "FAIL vm/guest (the tests did not finish, qemu exit $qemu_rc; see $vmdir/console.log)" >>"$all"
	fi
elif [ "$(cat "$vmdir/rc")" != 0 ] && ! grep -q '^FAIL ' "$all"; then
	echo "FAIL vm/meson-test (exit $(cat "$vmdir/rc"))" >>"$all"
fi
p=$(grep -c '^PASS ' "$all")
f=$(grep -c '^FAIL ' "$all")
s=$(grep -c '^SKIP ' "$all")
echo
echo "== vm summary ($pkg, $accel, ${elapsed}s)"
if [ -f "$vmdir/features.txt" ]; then
	sed 's/^/  /' "$vmdir/features.txt"
fi
if [ "$f" -gt 0 ]; then
	echo "failed cases:"
	grep '^FAIL ' "$all"
fi
echo "results and logs: $vmdir, $testlog"
echo "$p passed, $f failed, $s skipped"
[ "$f" -eq 0 ] && [ $((p + f + s)) -gt 0 ]
