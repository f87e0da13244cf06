# warden's container image: a static binary on distroless, run as nonroot.
#
#   docker build --build-arg VERSION="$(git describe --tags --always --dirty)" -t warden .
#   make image                                       # the same with buildah
#
# Run it read-only, as non-root, with every capability dropped. There is no
# shell in the image: probe the admin port over HTTP (/healthz, /readyz).

# Build stage: Go only, no package manager, so the Go image is all it needs.
FROM golang:1.26 AS build
WORKDIR /src

# Modules first: this layer is redone only when go.mod or go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download

# Then only the source: every top-level .go file (a new one needs no edit
# here), and each package folder, one line each. A new package folder must be
# added below; a missing one fails the build, it is not silently left out.
# .dockerignore keeps tests and testdata out of the context.
COPY *.go ./
COPY auth/ auth/
COPY proxy/ proxy/
COPY throttle/ throttle/
COPY internal/ internal/

ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/warden .

# Final stage: no shell, no package manager; CA bundle, tzdata, passwd with
# nonroot (65532), /tmp.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/warden /warden
USER 65532:65532
# 8080: the proxy (WARDEN_LISTEN); 9901: admin, /healthz /readyz /metrics
# (WARDEN_ADMIN_LISTEN), keep it inside the pod network.
EXPOSE 8080 9901
ENTRYPOINT ["/warden"]
