"""Which signal should catdog scale on? A real catdog's measured response to load (capacity.py), replayed through
the Kubernetes HPA's own algorithm (hpa.py) under a load ramp for each candidate signal (replay.py); plots.py draws
the replica curves. `python -m loadtest autoscale` runs all of it (docs/benchmarks.md, "Autoscaling")."""
