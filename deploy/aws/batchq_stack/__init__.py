"""The batchq AWS stack (CDK in Python): :class:`~batchq_stack.stack.BatchqStack` and its grants table."""
