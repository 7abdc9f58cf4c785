//! Proxyless gRPC on the mesh (see issue "proxyless-grpc"; not yet implemented).
