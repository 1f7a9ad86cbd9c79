"""Load tests against real processes: pods, Redis topologies, Locust users and injected faults.

`run.run_load` drives a run; `pod`, `receiver` and `proxy` are the servers it starts (each its
own process, bound to 127.0.0.1); `locustfile` and `shapes` run only inside Locust's process.
Nothing here is imported by `store/`, and pytest never imports `locustfile` or `shapes`.
"""
