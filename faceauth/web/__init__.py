"""The Face API's small web layer, below the domains: shared request parameters, typed dependencies (the caller,
the tenant it may act on, the services) and the handlers that turn store and ML-service failures into answers."""
