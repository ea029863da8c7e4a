"""Chats (the AI SDK's chat transport at ``/v1/chat``): a chat's record, the messages
that wait for their turn, and the tool approvals a generation waits on.

- ``convert``: the chat request checked, and its UI messages turned into a generation
  request; pure.
- ``records``: a chat's record in Redis (its latest generation, its history list read
  in pages, its turns, its queue, steering), with its scripts; its generations' ids.
- ``ui_message``: a chat's assistant message folded from its generation's events, as
  the AI SDK's reader builds it; pure.
- ``ui_tools``: that message's tool parts, updated as the AI SDK updates them; pure.
- ``partial_json``: a tool call's input while it streams, read as the AI SDK reads it;
  pure.
- ``placing``: where a submit's message goes in the history the server keeps (an
  append, an edit, a regenerate's cut), and the whole chat compared with it; pure.
- ``messages``: the chat so far, whole or in pages, and as a submit builds on it.
- ``settle``: each turn, once its answer ends, folded into the chat's history, its
  webhook queued and its owner told (the front-ends' loop that does it).
- ``owners``: what a chat's owner sees across its chats: the list, the lifecycle feed.
- ``pump``: the front-ends' loop that starts a chat's waiting message once its answer
  ends.
- ``approvals``: decisions on the tool calls a generation waits on (and a decision's
  body checked), and the sweep that denies the ones nobody decided in time.
- ``binding``: what binds a decision to its call (the input's hash) and its deadline;
  pure.
- ``conversation``: a submit's turn: the chat's next answer started, or the message
  queued, steering the running answer, or interrupting it; decisions a submit carries;
  the chat so far, and whether a run id names one of its answers.
- ``followers``: the viewers of chats' streams on a front-end, woken when a chat's next
  turn starts.
- ``rewind``: where a run's resume from its tail starts: the start of the part the asked
  chunk lands in; pure.
- ``framing``: a chat answer's SSE frames: where an answer ends at a wait for a person,
  and the ``finish`` that ``WorkflowChatTransport`` waits for.
- ``reset_step``: the AI SDK 7's view of a stream, for the readers that ask for it (a
  restarted step's ``start-step`` served as ``reset-step``).

May import: ``broadcaster.core`` and ``broadcaster.generations`` (a chat's answer is a
generation).
"""
