# syntax=docker/dockerfile:1
#
# exproxy container: a static binary on distroless, running as non-root.
#   docker build --build-arg VERSION=$(git describe --always) -t exproxy .
#   docker run -p 6380:6380 -e EXPROXY_UPSTREAM=redis://redis:6379 exproxy

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# Modules first, so that editing code does not re-download them.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
# CGO off: the binary needs no libc and runs on distroless/static.
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/exproxy ./cmd/exproxy

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/exproxy /usr/local/bin/exproxy
# In a container the proxy must listen on all interfaces to be reachable;
# the admin endpoint too, for kubelet probes and Prometheus. Beyond loopback
# the admin endpoint serves only /healthz, /readyz and /metrics: /contention
# (key names, client addresses) answers 403 until EXPROXY_ADMIN_TOKEN is set,
# and the profiler is off unless EXPROXY_ADMIN_PPROF=true (then it needs the
# token too). EXPROXY_ADMIN_LISTEN="" turns the endpoint off.
# Environment variables rank below flags, so `docker run ... --listen X` wins.
ENV EXPROXY_LISTEN=0.0.0.0:6380 \
    EXPROXY_ADMIN_LISTEN=0.0.0.0:9380
EXPOSE 6380 9380
# distroless's nonroot user, by number so that Kubernetes' runAsNonRoot can
# verify it without reading /etc/passwd.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/exproxy"]
CMD ["serve"]
