#!/usr/bin/env bash
# Regenerate the Python modules of Clara's Platform API from the .proto files beside this script.
# Needs grpcio-tools (clarad's `test` extra pins the version whose output is committed);
# tests/unit/test_api_protos.py fails when the committed modules differ from what this writes.
set -eu
cd "$(dirname "$0")/../../.."
"${PYTHON:-python3}" -m grpc_tools.protoc -I . --python_out=. --pyi_out=. --grpc_python_out=. clarad/api/protos/*.proto
