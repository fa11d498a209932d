"""numharden's command-line interface (installed as the package ``numharden_cli``)."""
