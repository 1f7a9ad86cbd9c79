"""The SimPy multi-pod simulator.

Pods run the real `TimerService` and store code on an embedded Redis (fakeredis, with Lua)
under simulated time. Faults come from a plan drawn from the seed; everything is recorded in
one history (`record.history`) that `harness.checker` judges. A run is a pure function of its
scenario and seed.
"""
