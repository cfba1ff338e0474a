"""dpm's disk-image format, shared by the deploy client (which cuts and sends) and the imager (which
stores and serves): content-defined chunks, their BLAKE3 ids, zstd blobs, manifests, the chunk store."""
