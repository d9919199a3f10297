"""Models that change while serving: versions side by side, sources, the registry requests lease from, and the
control loop that keeps the registry in step with the repository. Protocol-free: knows nothing of HTTP or gRPC."""
