"""The loop: sessions, decisions, stop rules, events, options and how a session is built."""
