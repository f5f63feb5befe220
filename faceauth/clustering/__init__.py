"""Grouping face embeddings by person without labels."""

from faceauth.clustering.dbscan import NOISE, PairBudgetExceeded, dbscan_cosine

__all__ = ["NOISE", "PairBudgetExceeded", "dbscan_cosine"]
