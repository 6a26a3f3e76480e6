"""The streaming side: Faust agents, Kafka I/O, and the per-shard batch processor."""
