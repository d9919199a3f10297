"""The private descriptor pool of catdog's generated gRPC modules (see service/grpc/codegen.py)."""

from google.protobuf import descriptor_pool

POOL = descriptor_pool.DescriptorPool()
