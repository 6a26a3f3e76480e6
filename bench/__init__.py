"""tierstream's benchmark: ``tierstream bench`` / ``make bench`` (see docs/benchmarks.md).

Modules:

* ``bench.mix``       - the seeded synthetic event mix (heavy-tailed customers, log-normal
                        amounts, 70% engagements, 30% purchases with refunds, 90 days).
* ``bench.consumers`` - the three baselines, run as subprocesses like the worker: a bare
                        aiokafka consumer, a tutorial-style Faust agent with one awaited
                        Redis round trip per event, and a quix-streams peer with RocksDB
                        state (its own interpreter: .venv-peer, see infra.peer_python).
* ``bench.infra``     - fresh topics, namespaces and consumer groups on the shared local
                        Kafka and Redis, and their cleanup; machine description.
* ``bench.phases``    - the measurements.
* ``bench.profile``   - the worker's hot path (``ShardProcessor.process``) in-process.
* ``bench.report``    - plot and markdown table from the results files.
* ``bench.run``       - ``main(argv)``: one run of everything, results to bench/results/.
"""
