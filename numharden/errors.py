"""Exceptions raised by numharden.

Every error names the object (file, tensor, option), what was expected, what was found
and how to fix it. The command-line interface prints ``str(error)`` as one line on stderr
and exits with status 2.
"""


class NumhardenError(Exception):
    """Base class of every error numharden raises on bad input."""

    def __str__(self) -> str:  # KeyError would otherwise print the repr of the message
        return str(self.args[0]) if self.args else self.__class__.__name__


class FormatError(NumhardenError, ValueError):
    """A file or its contents do not follow the documented format."""


class ShapeError(NumhardenError, ValueError):
    """An array has the wrong shape."""


class DTypeError(NumhardenError, TypeError):
    """An array has the wrong dtype."""


class MissingTensorError(NumhardenError, KeyError):
    """A named tensor, dataset or node does not exist."""


class ConfigError(NumhardenError, ValueError):
    """An option or setting is out of range or inconsistent."""
