"""faceauth: self-hosted face authentication."""

__version__ = "0.1.0"
