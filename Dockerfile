# Both binaries, static (CGO_ENABLED=0), on distroless as the nonroot user.
#   docker build -t registry.local/csmops/etcd-repopulate:TAG .
# The worker is the entrypoint; the CLI is in the image too:
#   kubectl -n services exec deploy/etcd-repopulate-worker -- repopulate start --dry-run --wait
FROM golang:1.26.8-bookworm AS build
WORKDIR /src
# Modules first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/repopulate-worker ./worker \
 && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/repopulate ./starter

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/repopulate-worker /out/repopulate /usr/local/bin/
# 65532 is distroless' nonroot; deploy/deployment.yaml runs as the same IDs.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/repopulate-worker"]
