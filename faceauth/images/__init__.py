"""Stored face images, shared through short-lived links (presigned by S3, or signed by the Face API itself)."""
