"""The LENS model family: backbone preparation, clustering, the pooling equation, the saved folder, the one
model class, making, loading, exporting and explaining models."""
