"""The provider seam: each provider opens one model call and yields Anthropic's raw stream
events as dicts, so one pure mapping serves them all (``Provider``, in ``base``).

``anthropic`` passes the request through to the Anthropic SDK, with the prompt cache's
breakpoints (``anthropic_cache``, pure); ``openai`` translates it for
Chat Completions (``openai_request``) and the chunks back (``openai_stream``), both pure;
with ``WORKER_OPENAI_API=responses``, ``openai_responses`` calls the Responses API in the
background instead (``openai_responses_request``, ``openai_responses_stream``, pure, built
on the first two), and a worker that takes a generation over streams the rest of the same
response (``Reattaching``); ``fake`` answers offline for every provider. Each maps its
API's usage to the raw events' (``worker.usage``).

May import: ``broadcaster.core``, ``broadcaster.generations`` (what the ``openai``
provider can send of a request, one rule with the front-end's), ``worker.providers.base``,
``worker.usage`` and, for ``openai``, its pure halves.
"""
