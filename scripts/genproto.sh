#!/usr/bin/env bash
# Regenerates the Go code beside the .proto files with pinned generator
# versions. Usage: genproto.sh PROTOC_VERSION GEN_GO_VERSION GEN_GRPC_VERSION
set -euo pipefail
want_protoc=$1 gen_go=$2 gen_grpc=$3
cd "$(dirname "$0")/.."

if ! command -v protoc >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq protobuf-compiler >/dev/null
fi
have=$(protoc --version | awk '{print $2}')
if [ "$have" != "$want_protoc" ]; then
  echo "genproto: protoc $have found, $want_protoc pinned: the generated headers will differ" >&2
  exit 1
fi
mkdir -p .bin
GOBIN=$PWD/.bin go install "google.golang.org/protobuf/cmd/protoc-gen-go@$gen_go"
GOBIN=$PWD/.bin go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$gen_grpc"
cd proto
PATH=$PWD/../.bin:$PATH protoc -I . \
  --go_out=. --go_opt=paths=source_relative \
  --go-grpc_out=. --go-grpc_opt=paths=source_relative \
  stratapb/*.proto
