"""worker-grpc."""
