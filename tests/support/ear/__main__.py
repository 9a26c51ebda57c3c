"""``python -m tests.support.ear CONFIG.json``: one session, inside a loopback-only netns."""

from tests.support.ear.session import main

main()
