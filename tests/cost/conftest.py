"""Shared fixtures of the cost-model tests."""
import pytest
import torch


@pytest.fixture
def one_thread():
    """Small models: one thread is as fast and does not fight the other processes for the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
