"""The provider seam: each provider opens one model call and yields it in one neutral
vocabulary (``parts``: a message's start, its parts' starts, deltas and ends, its stop
and usage), so one pure mapping serves them all (``Provider``, in ``base``).

``anthropic`` passes the request through to the Anthropic SDK, with the prompt cache's
breakpoints (``anthropic_cache``, pure), and reads its raw events (``anthropic_stream``,
pure); ``openai`` translates it for
Chat Completions (``openai_request``) and the chunks back (``openai_stream``), both pure;
with ``WORKER_OPENAI_API=responses``, ``openai_responses`` calls the Responses API in the
background instead (``openai_responses_request``, ``openai_responses_stream``, pure, built
on the first two), and a worker that takes a generation over streams the rest of the same
response (``Reattaching``); ``fake`` answers offline for every provider. Each reports
its API's usage in the project's one shape (``broadcaster.core.events.Usage``).

May import: ``broadcaster.core``, ``broadcaster.generations`` (what the ``openai``
provider can send of a request, one rule with the front-end's), ``worker.providers.base``
and ``parts``, and each provider its own pure halves.
"""
