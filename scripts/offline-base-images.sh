# offline-base-images.sh: sourced by image-test.sh. No registry can be
# reached here, so the two base images the Dockerfile names (golang:1.26 and
# gcr.io/distroless/static-debian12:nonroot) are built locally as stand-ins,
# under exactly those names, from this machine's Go, busybox, CA bundle and
# tzdata. This is the offline workaround, kept apart from the checks
# themselves; with a registry at hand, pull the real images instead and skip
# it (image-test.sh's IMAGE_TEST_REAL_BASES=1).
# shellcheck shell=bash

# --- stand-in base images ------------------------------------------------------
# Built once per content: a tag carrying a fingerprint of what went in (this
# script, Go, busybox, CA bundle, tzdata) marks a stand-in as current.
goroot=$(go env GOROOT)
go_env=()
for v in GOPROXY GOSUMDB GOFLAGS GONOSUMDB GONOPROXY GOPRIVATE GOINSECURE; do
  val=$(go env "$v"); [[ -n $val ]] && go_env+=("$v=$val")
done
for v in HTTP_PROXY HTTPS_PROXY NO_PROXY http_proxy https_proxy no_proxy; do
  [[ -n ${!v:-} ]] && go_env+=("$v=${!v}")
done
fingerprint() { printf '%s\n' "$self" "$@" | sha256sum | cut -c1-16; }
go_fp=$(fingerprint "$(go version)" "$goroot" "$(sha256sum "$busybox")" "${go_env[@]}")
dl_fp=$(fingerprint "$(sha256sum /etc/ssl/certs/ca-certificates.crt)" "$(du -sb /usr/share/zoneinfo)")
standins=localhost/warden-image-test-standin
if ! podman image exists "$standins:go-$go_fp" || ! podman image exists "$standins:distroless-$dl_fp"; then
  # New stand-ins: every image built on the old ones is stale. Start afresh,
  # which also keeps the store's size bounded.
  podman image prune --all --force >/dev/null || fail "podman image prune"
fi

# standin NAME CACHE-TAG ROOTFS GOROOT [buildah config args...]: commit ROOTFS
# (and GOROOT at /usr/local/go, unless empty) as an image FROM scratch, tagged
# NAME, unless the image tagged CACHE-TAG exists already.
standin() {
  local name=$1 cache=$2 rootfs=$3 goroot=$4 ctr mnt; shift 4
  if podman image exists "$cache"; then
    podman tag "$cache" "$name"
    say "stand-in $name: reused"
    return
  fi
  ctr=$(buildah from scratch)
  mnt=$(buildah mount "$ctr")
  cp -a "$rootfs/." "$mnt/"
  [[ -z $goroot ]] || cp -a "$goroot" "$mnt/usr/local/go"
  buildah umount "$ctr" >/dev/null
  buildah config "$@" "$ctr"
  buildah commit --quiet --rm "$ctr" "$name" >/dev/null
  podman tag "$name" "$cache"
  say "stand-in $name: built"
}

say "stand-in base images"
# golang:1.26 - like the official image: Go at /usr/local/go, GOPATH /go,
# GOTOOLCHAIN=local; plus the host's proxy settings so `go mod download` works.
root=$tmp/rootfs-go
mkdir -p "$root"/{bin,etc/ssl/certs,root,go/bin,go/src,usr/local,tmp}
chmod 1777 "$root/tmp"
cp "$busybox" "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
go_version=$(go env GOVERSION)
env_args=()
for kv in PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  GOLANG_VERSION="${go_version#go}" GOTOOLCHAIN=local GOPATH=/go HOME=/root "${go_env[@]}"; do
  env_args+=(--env "$kv")
done
standin "$GO_BASE" "$standins:go-$go_fp" "$root" "$goroot" "${env_args[@]}" --workingdir /go --cmd /bin/sh \
  --os linux --arch "$(go env GOARCH)"

# gcr.io/distroless/static-debian12:nonroot - as the real one: no shell, user
# 65532, CA bundle, tzdata, passwd/group, /tmp, /home/nonroot.
root=$tmp/rootfs-distroless
mkdir -p "$root"/{etc/ssl/certs,usr/share,tmp,root,home/nonroot}
chmod 1777 "$root/tmp"
chmod 700 "$root/root" "$root/home/nonroot"
chown 65532:65532 "$root/home/nonroot"
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
cp -a /usr/share/zoneinfo "$root/usr/share/zoneinfo"
cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
cat >"$root/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
tty:x:5:
staff:x:50:
nonroot:x:65532:
EOF
printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
printf 'PRETTY_NAME="Distroless stand-in for warden image-test"\nID=debian\nVERSION_ID="12"\n' >"$root/etc/os-release"
standin "$DISTROLESS" "$standins:distroless-$dl_fp" "$root" "" --user 65532 --workingdir /home/nonroot \
  --env PATH=/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin \
  --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt --os linux --arch "$(go env GOARCH)"
rm -rf "$tmp/rootfs-go" "$tmp/rootfs-distroless"
phase_done "stand-in base images"

