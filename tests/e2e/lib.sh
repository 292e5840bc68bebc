# tests/e2e/lib.sh: what prepare, build-guest and boot share. Sourced (bash), never run.
#
# The e2e cache (VSMMU_E2E_CACHE, default /var/cache/vsmmu-e2e) lives outside the repository:
#   chroot/        a Debian trixie chroot (debootstrap): QEMU, UEFI firmware, the arm64 cross toolchain and
#                  the arm64 libraries the project links; nothing from trixie is installed into the host
#   out/Image      the guest kernel, out/kernel.config its configuration, out/busybox (static, arm64)
#   out/versions   the package versions prepare chose from the archive
#   stamps/STEP    the hash of the inputs each step was last built from
#   logs/          one log per step (the kernel build's is logs/kernel-build.log)
#   ready          written last by a successful prepare: what the cache holds

e2e_cache=${VSMMU_E2E_CACHE:-/var/cache/vsmmu-e2e}
e2e_chroot_dir=$e2e_cache/chroot
e2e_out=$e2e_cache/out
e2e_logs=$e2e_cache/logs

# The QEMU firmware, inside the chroot (qemu-efi-aarch64).
e2e_uefi=/usr/share/qemu-efi-aarch64/QEMU_EFI.fd

# e2e_in_chroot [--bind HOST_DIR:CHROOT_DIR]... [--] COMMAND [ARG]...
# Runs COMMAND inside the chroot with a clean environment, in a private mount namespace: /proc, /sys, /dev
# and the bind mounts exist only for COMMAND and vanish with it, so nothing stays mounted on the host.
e2e_in_chroot() {
  local binds=()
  while [ $# -gt 0 ]; do
    case $1 in
      --bind) binds+=("$2"); shift 2 ;;
      --) shift; break ;;
      *) break ;;
    esac
  done
  unshare --mount --propagation private -- bash -c '
    set -e
    root=$1; nbinds=$2; shift 2
    mount -t proc proc "$root/proc"
    mount -t sysfs sysfs "$root/sys"
    mount --rbind /dev "$root/dev"
    for ((i = 0; i < nbinds; i++)); do
      mkdir -p "$root${1#*:}"
      mount --bind "${1%%:*}" "$root${1#*:}"
      shift
    done
    exec chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb DEBIAN_FRONTEND=noninteractive \
      PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"
  ' e2e-chroot "$e2e_chroot_dir" "${#binds[@]}" "${binds[@]}" "$@"
}

# The exit status for "the e2e tier cannot run here" (no cache, no archive): 77, which the e2e ctests take as
# skipped, except under CI=true, where the tier must run and it is a failure (1).
e2e_unavailable_status() { if [ "${CI:-}" = true ]; then echo 1; else echo 77; fi; }

# e2e_ready_or_why: exit 0 if prepare finished (the cache is usable); else print why not and exit 1.
e2e_ready_or_why() {
  if [ -f "$e2e_cache/ready" ] && [ -f "$e2e_out/Image" ] && [ -x "$e2e_out/busybox" ]; then
    return 0
  fi
  echo "the e2e cache $e2e_cache is not prepared: run tests/e2e/prepare"
  return 1
}
