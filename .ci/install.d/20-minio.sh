#!/usr/bin/env bash
# Installs the MinIO server that server/storage/minio's integration tests
# start on loopback. Built from source with the Go toolchain (a few minutes on
# 2 cores); skipped when a minio built from the same version is on PATH.
set -euo pipefail

MINIO_MODULE=github.com/minio/minio
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c

if bin=$(command -v minio 2>/dev/null); then
  if go version -m "$bin" 2>/dev/null | awk '$1=="mod" && $2=="'"$MINIO_MODULE"'" {print $3}' | grep -qx "$MINIO_VERSION"; then
    echo "minio $MINIO_VERSION already installed at $bin"
    exit 0
  fi
fi

echo "building minio $MINIO_VERSION (takes a few minutes)"
start=$(date +%s)
go install "$MINIO_MODULE@$MINIO_VERSION"
echo "minio built in $(( $(date +%s) - start ))s: $(go env GOPATH)/bin/minio"
