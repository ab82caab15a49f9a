"""Short, harmless documents that the demo indexes for its LlamaIndex query engine."""
