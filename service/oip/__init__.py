"""The Open Inference Protocol (KServe v2 / Triton): tensors <-> images and answers, shared by the REST and gRPC
adapters. protocol.py is the entry point."""
