"""The Docker sandbox, the one package that imports ``docker``; it imports only the
core and errors.

``config`` holds a run's limits and files (no docker); ``client`` connects to the engine
and explains its errors; ``engine`` runs programs in locked-down containers (``Sandbox``,
``check``, ``clean``); ``image`` builds and inspects images, and ``debian_image`` builds
the default one."""

__all__: list[str] = []
