"""The ``pipecat-waves`` command line.

``main`` parses the arguments and dispatches; ``commands`` holds ``say`` and
what the commands share (the endpoint, logs, errors), ``voices`` the voice
list, ``dicts`` the pronunciation-dictionary commands, ``demo`` the recorded
conversation with a barge-in (its script and pipeline stand-ins in
``demo_conversation``, its options in ``demo_options``), and
``interrupt`` how Ctrl-C ends a command cleanly.
"""
