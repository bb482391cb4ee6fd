"""Search and serving: corpus encoding, exact and faiss retrieval, the Qdrant engine, collections."""
