"""/v1/keys: API key management over REST (admin keys only), and the caller's own key."""
