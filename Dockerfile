# bm-server, the tenant API, in a container: a static binary (CGO_ENABLED=0)
# on distroless, as an unprivileged user, its data (SQLite, the embedded S3
# buckets, keys) in the volume /data. The README says how to build and run it:
#
#   docker build -t bm-server --build-arg VERSION=$(git describe --tags --always) \
#     --build-arg COMMIT=$(git rev-parse HEAD) --build-arg DATE=$(git log -1 --format=%cI) .
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=
ARG DATE=
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X github.com/basicmachines-co/bm-agent/internal/buildinfo.Version=${VERSION} -X github.com/basicmachines-co/bm-agent/internal/buildinfo.Commit=${COMMIT} -X github.com/basicmachines-co/bm-agent/internal/buildinfo.Date=${DATE}" \
      -o /out/bm-server ./cmd/bm-server \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/bm-server /usr/bin/bm-server
COPY --from=build --chown=65532:65532 /out/data /data
USER nonroot:nonroot
VOLUME /data
# The API and the embedded S3 endpoint; set BM_SERVER_PUBLIC_URL and
# BM_SERVER_S3_PUBLIC_URL to the URLs the devices reach them at.
EXPOSE 8787 8788
ENTRYPOINT ["/usr/bin/bm-server", "--data-dir", "/data", "--addr", "0.0.0.0:8787", "--s3-addr", "0.0.0.0:8788"]
