"""`make bench-peers`: catdog against the servers its users could run instead (KServe, LitServe, Triton via
PyTriton, BentoML, MLServer, Ray Serve), each in a venv of its own under .peers/, each doing catdog's own
per-image work (loadtest/peers/servers/common.py), measured in one run with catdog and its in-process limit.
See docs/benchmarks.md, "catdog against its peers"."""
