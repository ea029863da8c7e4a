"""``python -m broadcaster bench``: the load generator that measures a running
deployment from outside (viewers over real sockets, publishes through ``Publisher``).

- ``run``: the command line: its options, typed into a ``BenchConfig``; the exit code.
- ``plan``: ``BenchConfig``, and the ``Plan`` made of it: streams, front-ends, routes.
- ``driver``: one run (``run_bench``): viewers, the measured window, the late joiners.
- ``publishing``: where and on what schedule the events are published (``EventSink``).
- ``groups``: the viewer processes of a run, started and awaited together.
- ``viewers``: the viewers themselves: many cheap SSE connections per process.
- ``probes``: what is read of other processes and of Redis (CPU, I/O, RSS, INFO).
- ``timeline``: the run's timeline, sampled twice a second, and progress on stderr.
- ``figures``: what a run measured, made into the figures it reports.
- ``report``: those figures as text.
- ``plot``: those figures drawn into a PNG (``--plot``).

May import: ``broadcaster.core`` and ``broadcaster.clients``.
"""
