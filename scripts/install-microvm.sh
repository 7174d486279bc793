#!/usr/bin/env bash
# Installs what the microvm sandbox needs (as root), only what is missing:
#   - QEMU (Debian's qemu-system-x86, for `-M microvm`) and e2fsprogs
#     (mkfs.ext4 -d makes each image's root disk);
#   - Debian's cloud kernel as the guests' kernel: the package of
#     linux-image-cloud-amd64's current version is downloaded and unpacked
#     into $PREFIX/lib/slipway/microvm (vmlinuz-VERSION and
#     lib/modules/VERSION; the driver reads the modules' dependencies from
#     the modules themselves, no depmod needed), never installed: installing it would run the
#     host's kernel hooks (an initramfs, boot symlinks, update-grub) and
#     could change what the host boots;
#   - slipway-init, the guests' init, built static into the same directory
#     (rebuilt on every run: it must match the slipway binary's protocol).
# The driver finds the kernel there (or a cloud kernel in /boot with its
# modules in /lib/modules), and slipway-init beside the slipway binary or
# there.
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=${PREFIX:-/usr/local}
dest="$PREFIX/lib/slipway/microvm"
export DEBIAN_FRONTEND=noninteractive PATH=/usr/local/go/bin:$PATH

need=()
command -v qemu-system-x86_64 >/dev/null 2>&1 || need+=(qemu-system-x86)
command -v mkfs.ext4 >/dev/null 2>&1 || need+=(e2fsprogs)
updated=false
if [ ${#need[@]} -gt 0 ]; then
  echo "install-microvm.sh: installing ${need[*]}"
  apt-get update
  updated=true
  apt-get install -y --no-install-recommends "${need[@]}"
fi

# The kernel package linux-image-cloud-amd64 points to now.
pkg() { apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'; }
name=$(pkg)
if [ -z "$name" ] && ! $updated; then
  apt-get update
  name=$(pkg)
fi
if [ -z "$name" ]; then
  echo "install-microvm.sh: no package linux-image-cloud-amd64 in the apt sources" >&2
  exit 1
fi
version=${name#linux-image-}
if [ -f "$dest/vmlinuz-$version" ] && [ -d "$dest/lib/modules/$version/kernel" ]; then
  echo "guest kernel $version already in $dest"
else
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  chown _apt "$tmp" 2>/dev/null || true
  (cd "$tmp" && apt-get download "$name")
  dpkg-deb -x "$tmp"/*.deb "$tmp/root"
  mkdir -p "$dest/lib/modules"
  rm -rf "$dest/lib/modules/$version"
  cp -a "$tmp/root/lib/modules/$version" "$dest/lib/modules/"
  cp "$tmp/root/boot/vmlinuz-$version" "$dest/vmlinuz-$version.tmp"
  mv "$dest/vmlinuz-$version.tmp" "$dest/vmlinuz-$version"
  echo "unpacked guest kernel $version into $dest"
fi

CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$dest/slipway-init.tmp" ./cmd/slipway-init
mv "$dest/slipway-init.tmp" "$dest/slipway-init"
echo "built $dest/slipway-init"
