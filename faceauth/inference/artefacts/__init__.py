"""Where model files come from: the download catalog and its pins, fetching and verifying, and where each model
the service loads lives on disk."""
