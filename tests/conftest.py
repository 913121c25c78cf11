"""Fixtures more than one test module uses."""

import pytest

from tests.helpers import copy_corpus


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """Six real corpus photos in a folder of their own: a training set for runs of a few steps."""
    return copy_corpus(tmp_path_factory.mktemp("corpus"), 6)
