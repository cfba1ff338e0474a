"""The imager's I/O: the image streams of the log (images), the vouchers table, the read models'
queries (readmodel), the chunk store's collection and verification (gc, collector), progress
signals on NATS (progress) and the data plane's store and caches (dataplane). The routes, the
commit and the handlers reach PostgreSQL, NATS and the disk only through these."""
