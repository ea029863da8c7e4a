"""The documentation site's generators: the reference pages made from the code (settings,
command line, HTTP API) and the mkdocs hooks that add them to the site at build time."""
