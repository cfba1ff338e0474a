"""dpm imager service: disk images: chunk store, backup and restore (the image stream)."""
