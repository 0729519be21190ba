"""One torch thread for these tests: the training loops in them (LTP, LSQ+) run small
tensors, where a second thread on a loaded machine only adds synchronisation waits."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
