"""Clara's gRPC Platform API (package ``nvidia.clara.platform``), served by clarad.

- ``server``: the grpc.aio server on the daemon's loop, its listeners, start and stop;
- ``models``, ``pipelines``, ``jobs``, ``payloads``, ``clara``: one servicer per Clara service;
- ``common``: response headers and codes, refusals, files in chunks; ``rules``: pure translations;
- ``protos/``: the .proto files and the Python modules generated from them (``regenerate.sh``).

Importing this package does not import the generated modules: they register Clara's names in
protobuf's default pool, which a process can hold only once (a Clara client in the same process
brings its own).
"""
