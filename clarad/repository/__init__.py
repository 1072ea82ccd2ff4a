"""The managed Triton model repository.

- ``files``: a model directory on disk: validation with Triton's schema, content digests, the
  renames that install or restore a revision, pruning;
- ``service``: ``ModelRepository``, through which every change to the repository goes.
"""

from clarad.repository.files import (
    BYTECODE_DIR,
    CLARA_TYPES,
    DEFAULT_MODEL_FILES,
    REVISION_PARAMETER,
    ModelInfo,
    clara_type,
    inspect_model,
    install,
    parse_clara_type,
    parse_config,
    prune,
    restore,
    stamped_config,
    tree_digest,
)
from clarad.repository.service import ModelRepository

__all__ = [
    "BYTECODE_DIR", "CLARA_TYPES", "DEFAULT_MODEL_FILES", "REVISION_PARAMETER", "ModelInfo", "ModelRepository",
    "clara_type", "inspect_model", "install", "parse_clara_type", "parse_config", "prune", "restore", "stamped_config", "tree_digest",
]
