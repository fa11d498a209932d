"""PyTorch golden logits for the model zoo: see make_golden.py and tests/test_golden.py."""
