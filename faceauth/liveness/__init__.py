"""Active liveness: a random head-movement challenge, answered with captured frames and judged on the server."""
