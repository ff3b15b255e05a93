"""Who does what across workers and nodes: partitions, leases, membership, the nodes known."""
