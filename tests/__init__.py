"""The test suite: a package, so every test imports its helpers as `from tests.helpers_x import ...`."""
