"""The networks, one class each. Every ONNX one is given a session made by `faceauth.inference.runtime.
create_session` (the service's tuned options) and never opens its own; what it adds is the network's contract:
its input format, one run over a batch, and what its output means."""
