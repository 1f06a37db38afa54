"""Service accounts: token formats shared by the API server and the controller manager."""
