"""Code that runs on the nodes as well as here: standard library only.

The node image carries this package (`/opt/dkron-iac/nodeside`): the
catch-up watcher and the node exporter (`exporter.py`, metrics for
Prometheus) run beside every agent, and read schedules the way the stack's
validation does.
"""
