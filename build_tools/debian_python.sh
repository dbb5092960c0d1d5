#!/usr/bin/env bash
# The suite under Debian's own CPython (trixie: CPython 3.13, gcc 14, glibc
# 2.41), in a chroot: another Python and another compiler than the ones CI
# runs on, with nothing from this machine's Python inside.
#
#   build_tools/debian_python.sh [--arch ARCH] [--cache DIR] [-- PYTEST_ARGS...]
#
# In the chroot it builds the sdist from the checkout (tracked and untracked,
# not ignored, files), unpacks it, and runs the README's test command there:
# `pip install ".[test]"` with the compiled engine required, then the suite in
# both engines. .ci/run runs this (amd64).
#
# --arch arm64 (or any architecture other than this machine's) builds the
# chroot with mmdebstrap and runs it under qemu-user (qemu-user-static): an
# aarch64 gcc, which contracts a*b+c into fused multiply-adds unless told
# not to, compiles the engine. Emulation is slow (an hour or so on 2 cores),
# so this installs only pytest and runs only the exactness tests unless
# PYTEST_ARGS name others: run it by hand when the engine or the build flags
# change.
#
# The chroot is kept in DIR (default /var/cache/microgpt-debian, or
# $MICROGPT_DEBIAN_CACHE) and reused, with its pip cache: the first run builds
# it (about a minute natively, some more emulated), later runs only test.
# Needs root (debootstrap, chroot, mount) and Debian's archive
# ($DEBIAN_MIRROR, default http://deb.debian.org/debian) and PyPI; installs
# debootstrap, mmdebstrap and qemu-user-static with apt-get when missing.
set -euo pipefail

suite=trixie
arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)
host_arch=$arch
cache=${MICROGPT_DEBIAN_CACHE:-/var/cache/microgpt-debian}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
pytest_args=()

die() { echo "debian_python.sh: $*" >&2; exit 2; }

while (($#)); do
    case $1 in
        --arch) (($# >= 2)) || die "--arch needs a Debian architecture (amd64, arm64, ...)"
            arch=$2; shift 2 ;;
        --cache) (($# >= 2)) || die "--cache needs a folder"
            cache=$2; shift 2 ;;
        --) shift; pytest_args=("$@"); break ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done
[[ $arch =~ ^[a-z0-9]+$ ]] || die "--arch $arch is not a Debian architecture name"
[[ $(id -u) == 0 ]] || die "needs root (debootstrap, chroot, mount): run it with sudo"

root=$(cd "$(dirname "$0")/.." && pwd)
chroot_dir=$cache/$suite-$arch
foreign=$([[ $arch == "$host_arch" ]] && echo no || echo yes)
packages=python3,python3-venv,python3-dev,gcc,libc6-dev,ca-certificates

apt_get() {  # waits for another apt to finish rather than failing at once
    DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=600 "$@" >/dev/null
}
need() {  # need COMMAND PACKAGE: install PACKAGE when COMMAND is missing
    command -v "$1" >/dev/null && return
    echo "installing $2 (for $1)" >&2
    apt_get install -y "$2" || { apt_get update && apt_get install -y "$2"; } \
        || die "cannot install $2 with apt-get (needed for $1)"
}

enable_emulation() {
    need "qemu-$qemu_arch-static" qemu-user-static
    need update-binfmts binfmt-support
    local binfmt=/proc/sys/fs/binfmt_misc
    [[ -e $binfmt/status ]] || mount -t binfmt_misc binfmt_misc "$binfmt"
    [[ -e $binfmt/qemu-$qemu_arch ]] || update-binfmts --enable "qemu-$qemu_arch"
    [[ -e $binfmt/qemu-$qemu_arch ]] || die "cannot register qemu-$qemu_arch with binfmt_misc"
}

build_chroot() {
    # Built beside its final place and renamed when complete: an interrupted
    # build is never mistaken for a chroot.
    local partial=$chroot_dir.partial
    rm -rf --one-file-system "$partial"  # never into a mount a killed build left there
    if [[ $foreign == no ]]; then
        need debootstrap debootstrap
        debootstrap --variant=minbase --include="$packages" "$suite" "$partial" "$mirror"
    else
        need mmdebstrap mmdebstrap
        mmdebstrap --variant=minbase --architectures="$arch" --include="$packages" \
            "$suite" "$partial" "$mirror"
    fi
    mv "$partial" "$chroot_dir"
}

mounted=()
cleanup() {
    local i
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[i]}" || true; done
}
mount_in() {  # mount_in TARGET MOUNT-ARGS...: mount inside the chroot, undone on exit
    local target=$chroot_dir$1
    shift
    mkdir -p "$target"
    mount "$@" "$target"
    mounted+=("$target")
}

mkdir -p "$cache"
# One run per chroot at a time: a second waits instead of mounting over the first.
exec {lock}>"$cache/$suite-$arch.lock"
flock "$lock"
trap cleanup EXIT
# A run killed before its cleanup left its mounts: undo them first.
for stale in parity dev/shm dev/pts dev proc; do
    ! mountpoint -q "$chroot_dir/$stale" 2>/dev/null || umount -l "$chroot_dir/$stale"
done

case $arch in arm64) qemu_arch=aarch64 ;; *) qemu_arch=$arch ;; esac
[[ $foreign == no ]] || enable_emulation
[[ -d $chroot_dir ]] || build_chroot

mount_in /proc -t proc proc
mount_in /dev --bind /dev
mount_in /dev/pts --bind /dev/pts
mount_in /dev/shm -t tmpfs tmpfs  # multiprocessing's semaphores (sweeps, dask)
cp /etc/resolv.conf "$chroot_dir/etc/resolv.conf"
# pip inside trusts what this machine trusts (a network may intercept TLS
# with a certificate authority of its own, known here but not in the chroot).
host_ca=${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}
[[ ! -f $host_ca ]] || cp "$host_ca" "$chroot_dir/etc/ssl/host-ca.pem"
# The golden files, read-only, when they are here; named by
# MICROGPT_PARITY_DIR but missing, they are named inside too, so that the
# golden test fails there as it would here.
environment=(HOME=/root LANG=C.UTF-8 PATH=/usr/sbin:/usr/bin:/sbin:/bin)
parity=${MICROGPT_PARITY_DIR:-$root/../shared/parity}
if [[ -e $parity/names.txt ]]; then
    mount_in /parity --bind -o ro "$parity"
    environment+=(MICROGPT_PARITY_DIR=/parity)
elif [[ -n ${MICROGPT_PARITY_DIR:-} ]]; then
    environment+=(MICROGPT_PARITY_DIR=/parity)
fi
[[ -z ${CI+set} ]] || environment+=("CI=$CI")  # CI=true: the extras' tests may not skip

# The checkout as git sees it (what `python -m build` would get from a clone).
work=$chroot_dir/root/work
rm -rf --one-file-system "$work"
mkdir -p "$work/src"
git -C "$root" ls-files -z --cached --others --exclude-standard \
    | (cd "$root" && tar --null -T - -cf -) | tar -xf - -C "$work/src"

if [[ $foreign == yes ]]; then  # emulated: only the exactness tests, unless named
    ((${#pytest_args[@]})) \
        || pytest_args=(tests/test_exact_everywhere.py tests/test_parity.py tests/test_fused.py)
fi
[[ ! -f $host_ca ]] || environment+=(PIP_CERT=/etc/ssl/host-ca.pem)

# Inside: a clean environment, the sdist, the README's install from it (all
# the test extras natively; only pytest emulated, where installing them would
# take long), and the suite in both engines.
started=$SECONDS
chroot "$chroot_dir" /usr/bin/env -i "${environment[@]}" FOREIGN=$foreign \
    /bin/bash -euo pipefail -c '
cd /root/work
python3 --version
gcc --version | sed -n 1p
python3 -m venv venv
. venv/bin/activate
python -m pip install --quiet --upgrade pip build
python -m build --sdist --outdir dist src
mkdir sdist
tar -xzf dist/*.tar.gz -C sdist --strip-components=1
cd sdist
if [[ $FOREIGN == yes ]]; then requirements=(. pytest); else requirements=(".[test]"); fi
MICROGPT_REQUIRE_EXTENSIONS=1 python -m pip install --quiet "${requirements[@]}"
status=0  # both engines run, whatever the first gives
python -m pytest -p no:cacheprovider "$@" || status=1
MICROGPT_PURE=1 python -m pytest -p no:cacheprovider "$@" || status=1
exit $status
' debian_python "${pytest_args[@]}" && result=passed || result=failed
echo "debian_python.sh: $suite $arch $result in $((SECONDS - started)) s (chroot: $chroot_dir)"
[[ $result == passed ]]
