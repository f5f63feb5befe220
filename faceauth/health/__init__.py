"""Liveness and readiness of the Face API: is the process up, and can it reach Milvus, the object store and the
ML service."""
