"""Policy-as-code: the file format, evaluation and tests of Warden's policies (no I/O)."""
