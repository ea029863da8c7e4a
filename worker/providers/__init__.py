"""The provider seam: each provider opens one model call and yields Anthropic's raw stream
events as dicts, so one pure mapping serves them all (``Provider``, in ``base``).

``anthropic`` passes the request through to the Anthropic SDK; ``openai`` translates it for
Chat Completions (``openai_request``) and the chunks back (``openai_stream``), both pure;
``fake`` answers offline for every provider.

May import: ``broadcaster.core``, ``worker.providers.base`` and, for ``openai``, its two
pure halves.
"""
