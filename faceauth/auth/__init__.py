"""API keys: who may call the Face API, for which tenant, how often."""
