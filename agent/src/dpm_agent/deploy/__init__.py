"""The deploy client: reads disk layouts, backs disks and partitions up into the image store and
restores them. Runs inside the network-boot deploy environment, and as a plain process against
disk-image files or block devices."""
