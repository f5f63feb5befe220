"""Grouping face embeddings by person without labels."""

from faceauth.clustering.dbscan import NOISE, dbscan_cosine

__all__ = ["NOISE", "dbscan_cosine"]
