"""Fuzzing of every parser of external input: ``python -m fuzz`` (``make fuzz``).

Each ``fuzz/targets_<area>.py`` module declares ``TARGETS``, a list of :class:`fuzz.harness.FuzzTarget`:
a parser's name, a hypothesis strategy of payloads, and a function that feeds one payload through
the real parser (usually the collector's ``collect()`` against a fake API or a file). An
``EvidenceError`` is the parser refusing bad input, which is right; any other exception is a crash.
"""
