"""Clara's Platform API: the .proto files and the modules grpcio-tools made of them (regenerate.sh)."""
