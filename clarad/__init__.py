"""clarad: Clara Deploy's Model Repository and Triton scheduler as a single-host daemon."""

__version__ = "0.1.0"
