#!/usr/bin/env bash
# Regenerates Sources/SluiceONNX/Generated/onnx.pb.swift from onnx.proto.
# Run by hand when onnx.proto changes; the output is committed and never generated at build time.
set -euo pipefail
cd "$(dirname "$0")/.."

ONNX_VERSION=1.23.2          # onnx.proto is taken from this onnx release (pip)
PROTOBUF_VERSION=1.39.0      # must match the swift-protobuf version in Package.swift

command -v protoc >/dev/null || { apt-get update -qq && apt-get install -y -qq protobuf-compiler; }
python3 -m pip install -q "onnx==${ONNX_VERSION}"
proto_dir=$(python3 -c 'import onnx, os; print(os.path.dirname(onnx.__file__))')

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone -q --depth 1 --branch "$PROTOBUF_VERSION" https://github.com/apple/swift-protobuf.git "$work/swift-protobuf"
swift build -c release --package-path "$work/swift-protobuf" --product protoc-gen-swift

mkdir -p "$work/proto" Sources/SluiceONNX/Generated
cp "$proto_dir/onnx.proto" "$work/proto/onnx.proto"
protoc --plugin="protoc-gen-swift=$work/swift-protobuf/.build/release/protoc-gen-swift" \
       --swift_opt=Visibility=Public \
       --proto_path="$work/proto" --swift_out=Sources/SluiceONNX/Generated "$work/proto/onnx.proto"
echo "wrote Sources/SluiceONNX/Generated/onnx.pb.swift (onnx ${ONNX_VERSION}, swift-protobuf ${PROTOBUF_VERSION})"
