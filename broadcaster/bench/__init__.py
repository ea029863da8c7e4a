"""``python -m broadcaster bench``: the load generator that measures a running
deployment from outside (viewers over real sockets, publishes through ``Publisher``).

- ``run.py``: the command line: its options, typed into a ``BenchConfig``; the exit code.
- ``plan.py``: ``BenchConfig``, and the ``Plan`` made of it: streams, front-ends, routes.
- ``driver.py``: one run (``run_bench``): viewers, the measured window, the late joiners.
- ``publishing.py``: where and on what schedule the events are published (``EventSink``).
- ``groups.py``: the viewer processes of a run, started and awaited together.
- ``viewers.py``: the viewers themselves: many cheap SSE connections per process.
- ``probes.py``: what is read of other processes and of Redis (CPU, I/O, RSS, INFO).
- ``timeline.py``: the run's timeline, sampled twice a second, and progress on stderr.
- ``figures.py``: what a run measured, made into the figures it reports.
- ``report.py``: those figures as text.
- ``plot.py``: those figures drawn into a PNG (``--plot``).

May import: ``broadcaster.core`` and ``broadcaster.clients``.
"""
