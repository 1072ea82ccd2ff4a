"""Set before anything imports protobuf: Clara's client (nvidia-clara-client, used by the API tests)
ships modules generated for protobuf 3, which only protobuf's pure-Python implementation still
loads. The daemons the tests start do not inherit this (see tests/e2e/clarad_process.py)."""

import os

os.environ["PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"] = "python"
