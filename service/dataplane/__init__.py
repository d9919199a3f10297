"""Protocol-free: model repository, runtime, batching, imaging, postprocessing, and the classifier that joins
them (images in, answers out). Knows nothing of HTTP or gRPC."""
