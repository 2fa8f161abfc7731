"""Training, decided once: the protocol every task's drivers train through (protocol.py) and
its optimiser (optim.py). A task's own drivers live with the task (harness.tasks.NAME)."""
