"""Code that runs on the nodes as well as here: standard library only.

The node image carries this package (`/opt/dkron-iac/nodeside`): the
catch-up watcher runs beside every agent, and reads schedules the way the
stack's validation does.
"""
