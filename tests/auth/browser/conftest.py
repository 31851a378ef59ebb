from tests.auth.server.conftest import keys_file

__all__ = ["keys_file"]
