"""Many-connection work on the socket core: scan (probe), bench, throughput, histograms.

Each engine asks ``core.destination`` where it may dial, once per target, and dials through
the invocation's ``Connector``; none resolves, judges or opens a socket of its own.
"""
