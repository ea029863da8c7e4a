"""The project's cap on a module's lines, in one place for the two tests that hold code to
it: the project's packages (``tests/unit/test_layout.py``) and the test suite
(``tests/unit/test_suite_layout.py``)."""

MAX_FILE_LINES = 700
