"""Real Redis servers on loopback (standalone, cluster, sentinel) and their TLS material, for
the load harness, the benchmarks and the tests."""
