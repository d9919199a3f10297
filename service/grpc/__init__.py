"""The Open Inference Protocol over gRPC: `inference.GRPCInferenceService` and `grpc.health.v1.Health`, served
by a grpc.aio server in the process and event loop of the HTTP service (server.py), over the same data plane."""
