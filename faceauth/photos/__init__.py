"""Photos a request brings: checked where they enter (deps), downloaded when given by URL (loader, fetch), and
analysed by the ML service (analyzer), with every failure naming the request field the photo came from."""
