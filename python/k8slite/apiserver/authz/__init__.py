"""Authorization: RBAC, the node authorizer, node restriction, the bootstrap policy, reviews."""
