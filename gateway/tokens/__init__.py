"""API tokens as an admin manages them: TokenService (create, update, enable, disable, delete)."""
