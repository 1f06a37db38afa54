"""API Priority and Fairness: FlowSchemas, priority levels, fair queuing per flow."""
