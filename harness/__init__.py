"""harness: a declarative benchmark harness for the MNIST digit-pair comparison exercise."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("digit-pairs-harness")  # the distribution's name (`harness` on PyPI is another project)
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
