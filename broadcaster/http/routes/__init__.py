"""The API's routes, one router per resource, as ``create_app`` includes them: ``health``
(probes, metrics and the demo page), ``generations``, ``streams`` (publish, and the SSE
stream) and ``tokens``."""
