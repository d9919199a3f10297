"""Access control below the transports: API keys with scopes (keys.py), the file watch that rotates them
(watch.py), the one check both transports call (authorizer.py), and the TLS material of both ports (tls.py).
Nothing here knows HTTP or gRPC; service/rest/access.py and service/grpc/access.py are the thin doors."""
