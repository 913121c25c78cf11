#!/usr/bin/env bash
# Build (once) the Debian trixie chroot with GIMP 3 that the real-GIMP tests drive.
#   bash tests/gimp/build_chroot.sh          # builds into $TINCT_GIMP_CHROOT or /var/cache/tinct/gimp-chroot
# A no-op when the chroot is already complete (marker file .tinct-ready). Needs root.
set -euo pipefail
DIR=${TINCT_GIMP_CHROOT:-/var/cache/tinct/gimp-chroot}
MIRROR=${TINCT_DEBIAN_MIRROR:-http://deb.debian.org/debian}
READY="$DIR/.tinct-ready"
# GIMP 3 and its Python; Xvfb + xdotool drive the dialogs and Edit > Undo in GIMP's GUI; a D-Bus
# session with AT-SPI (at-spi2-core, gir1.2-atspi-2.0) lets a test read the progress bar and press Cancel.
PKGS="gimp python3-gi gir1.2-gimp-3.0 python3-numpy xvfb xauth xdotool dbus-daemon at-spi2-core gir1.2-atspi-2.0"

if [ -f "$READY" ] && [ "$(cat "$READY")" = "$PKGS" ]; then
  echo "gimp chroot: ready at $DIR"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "gimp chroot: needs root to build $DIR" >&2
  exit 2
fi
if ! command -v debootstrap >/dev/null; then
  { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null 2>&1 \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null; }; } \
    || true
  if ! command -v debootstrap >/dev/null; then
    echo "gimp chroot: debootstrap is not installed and could not be installed" >&2
    exit 3
  fi
fi

start=$(date +%s)
mkdir -p "$DIR"
mounted=()
cleanup() {
  for ((i=${#mounted[@]}-1; i>=0; i--)); do umount -l "${mounted[$i]}" 2>/dev/null || true; done
}
trap cleanup EXIT

if [ ! -x "$DIR/usr/bin/apt-get" ] || [ ! -f "$DIR/.tinct-debootstrap" ]; then
  # never delete through a leftover bind mount (/dev!): unmount anything under DIR first
  for m in $(awk -v d="$(realpath "$DIR")/" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r); do
    umount -l "$m" || { echo "gimp chroot: cannot unmount $m" >&2; exit 1; }
  done
  rm -rf --one-file-system "$DIR"; mkdir -p "$DIR"
  echo "gimp chroot: debootstrap trixie into $DIR"
  debootstrap --variant=minbase trixie "$DIR" "$MIRROR" >"$DIR.debootstrap.log" 2>&1 \
    || { tail -30 "$DIR.debootstrap.log" >&2; exit 1; }
  touch "$DIR/.tinct-debootstrap"
fi

mount -t proc proc "$DIR/proc" && mounted+=("$DIR/proc")
mount --bind /dev "$DIR/dev" && mounted+=("$DIR/dev")
cp -L /etc/resolv.conf "$DIR/etc/resolv.conf" 2>/dev/null || true
echo "gimp chroot: apt-get install $PKGS"
chroot "$DIR" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
  sh -c "apt-get update -qq && apt-get install -y -qq --no-install-recommends $PKGS && apt-get clean" \
  >"$DIR.apt.log" 2>&1 || { tail -30 "$DIR.apt.log" >&2; echo "gimp chroot: apt-get failed" >&2; exit 1; }
chroot "$DIR" /usr/bin/test -x /usr/bin/gimp-console-3.0 || { echo "gimp chroot: gimp-console-3.0 missing" >&2; exit 1; }
echo "$PKGS" > "$READY"
echo "gimp chroot: built in $(( $(date +%s) - start ))s at $DIR"
