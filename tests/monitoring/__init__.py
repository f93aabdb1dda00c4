"""Tests of the shipped monitoring: Prometheus config, alert rules and Grafana dashboards."""
