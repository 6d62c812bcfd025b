"""cml-exporter: a Prometheus exporter for fleets of Cisco Modeling Labs (CML 2.x) controllers."""

__version__ = "0.1.0"
