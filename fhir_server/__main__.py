import sys

from fhir_server.cli import main

# The guard matters: validation worker processes are spawned and re-import the main module.
if __name__ == "__main__":
    sys.exit(main())
