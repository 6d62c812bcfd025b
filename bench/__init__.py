"""The benchmark harness: the exporter and a naive collector against a simulated CML fleet on loopback."""
